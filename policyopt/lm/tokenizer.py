"""The character-level tokenizer of the built-in model: a real ``PreTrainedTokenizerFast``.

Every printable ASCII character (and the newline) is one token, so digits are tokenised one by one
and nothing has to be learned about number splitting. On top of the characters sit the special
tokens ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>`` and the answer tags ``<answer>`` / ``</answer>``,
each a single token. The tags are *not* special: they survive ``decode(skip_special_tokens=True)``
so that format rewards can see them.

``tokenizer("12+3=")`` prepends ``<bos>`` (a template post-processor); completions should be encoded
with ``add_special_tokens=False``. Decoding concatenates characters without separators, so
``decode(encode(text, add_special_tokens=False)) == text`` for any printable-ASCII text.

The vocabulary is fixed (ids never depend on data), built with the ``tokenizers`` library::

    tok = build_char_tokenizer()
    tok.save_pretrained(path)                       # reload with AutoTokenizer.from_pretrained(path)
"""

from __future__ import annotations

import string

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
TAG_TOKENS: tuple[str, ...] = (ANSWER_OPEN, ANSWER_CLOSE)
CHARACTERS: tuple[str, ...] = tuple(chr(c) for c in range(32, 127)) + ("\n",)


def vocabulary() -> dict[str, int]:
    """The fixed token -> id map: specials (0-3), tags (4-5), then characters in ASCII order."""
    tokens = SPECIAL_TOKENS + TAG_TOKENS + CHARACTERS
    assert len(set(tokens)) == len(tokens)
    return {tok: i for i, tok in enumerate(tokens)}


def build_char_tokenizer(model_max_length: int = 256, padding_side: str = "left"):
    """Build the character-level ``PreTrainedTokenizerFast`` (vocabulary size 102).

    ``padding_side="left"`` suits batched generation with decoder-only models; SFT code pads itself.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = vocabulary()
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Each character (the space included) becomes its own "word"; WordLevel then maps it to its id.
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        model_max_length=model_max_length,
        padding_side=padding_side,
        clean_up_tokenization_spaces=False,
    )
    # Tags match as whole tokens before the character split; they are regular (non-special) tokens.
    tok.add_tokens(list(TAG_TOKENS))
    _check(tok, vocab)
    return tok


def _check(tok, vocab: dict[str, int]) -> None:
    """The ids of the fast tokenizer must equal the fixed vocabulary (a guard against library drift)."""
    for token, idx in vocab.items():
        got = tok.convert_tokens_to_ids(token)
        if got != idx:
            raise RuntimeError(f"tokenizer built with id {got} for {token!r}, expected {idx}")
    sample = string.digits + "+-*/=() " + ANSWER_OPEN + "x" + ANSWER_CLOSE
    if tok.decode(tok.encode(sample, add_special_tokens=False)) != sample:
        raise RuntimeError("character tokenizer does not round-trip; check the tokenizers version")
