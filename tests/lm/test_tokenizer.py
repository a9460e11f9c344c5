"""The character-level tokenizer: fixed ids, round trips, special tokens, save/load."""

from __future__ import annotations

import string

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from policyopt.lm.tokenizer import ANSWER_CLOSE, ANSWER_OPEN, build_char_tokenizer, vocabulary


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


def test_fixed_vocabulary(tok):
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert len(tok) == 102 == len(vocabulary())
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.convert_tokens_to_ids([ANSWER_OPEN, ANSWER_CLOSE, " ", "0", "~", "\n"]) == [4, 5, 6, 22, 100, 101]


@pytest.mark.parametrize("text", [
    "123+4567=", "sort:53,9,71=", "make 24 from 3,5,7,2=", "x = (a*b) / -c", "  two  spaces\nnew line ",
    string.printable.replace("\t", "").replace("\r", "").replace("\x0b", "").replace("\x0c", ""),
    "<answer>42</answer>", "a<answer>b</answer>c<answer>",
])
def test_round_trip(tok, text):
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    with_bos = tok(text)["input_ids"]
    assert with_bos == [tok.bos_token_id] + ids
    assert tok.decode(with_bos, skip_special_tokens=True) == text


def test_one_token_per_character_and_tags_are_single_tokens(tok):
    assert tok.convert_ids_to_tokens(tok.encode("12+3", add_special_tokens=False)) == ["1", "2", "+", "3"]
    ids = tok.encode("<answer>7</answer>", add_special_tokens=False)
    assert ids == [4, tok.convert_tokens_to_ids("7"), 5]
    # tags are kept by skip_special_tokens (format rewards need them); pad/bos/eos are dropped
    assert tok.decode([1, 4, 29, 5, 2, 0], skip_special_tokens=True) == "<answer>7</answer>"


def test_unknown_characters_map_to_unk(tok):
    ids = tok.encode("a\u00e9b", add_special_tokens=False)
    assert ids[1] == tok.unk_token_id and len(ids) == 3


def test_left_padding_batch(tok):
    enc = tok(["1", "123"], padding=True)
    assert enc["input_ids"] == [[0, 0, 1, 23], [1, 23, 24, 25]]
    assert enc["attention_mask"] == [[0, 0, 1, 1], [1, 1, 1, 1]]


def test_save_and_reload_with_autotokenizer(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    text = "make 24 from 3,5,7,2=<answer>(7-5+2)*3</answer>"
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert again.decode(again(text)["input_ids"], skip_special_tokens=True) == text
    assert again.padding_side == "left" and again.eos_token == "<eos>"
