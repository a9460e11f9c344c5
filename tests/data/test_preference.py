"""Preference data: loaders, token tables, batches and the synthetic ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from policyopt.core.config import build
from policyopt.data import preference as D
from policyopt.lm import synthetic_preference as S


@pytest.fixture(scope="module")
def tok():
    from policyopt.lm.tokenizer import build_char_tokenizer

    return build_char_tokenizer()


def syn(**kw):
    return build(S.SyntheticConfig, {"num_prompts": 400, **kw})


def test_jsonl_and_hf_loaders_round_trip(tmp_path):
    from datasets import Dataset

    rows = [{"prompt": "1+1=", "chosen": "ab", "rejected": "cd"}, {"prompt": "2+2=", "chosen": "e", "rejected": "f"}]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    a = D.load_pairs_jsonl(tmp_path / "p.jsonl")
    b = D.pairs_from_hf(Dataset.from_list(rows))
    assert a.prompts == b.prompts == ["1+1=", "2+2="] and a.chosen == ["ab", "e"] and b.rejected == ["cd", "f"]
    lists = [{"prompt": "x", "completions": ["a", "b", "c"], "labels": [1, 0, 2]}]
    (tmp_path / "l.jsonl").write_text(json.dumps(lists[0]))
    assert D.load_lists_jsonl(tmp_path / "l.jsonl").labels == [[1.0, 0.0, 2.0]]
    assert D.lists_from_hf(Dataset.from_list(lists)).completions == [["a", "b", "c"]]


def test_loaders_name_the_problem(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a", "chosen": 3, "rejected": "b"}\n')
    with pytest.raises(ValueError, match="row 0: field 'chosen'"):
        D.load_pairs_jsonl(tmp_path / "bad.jsonl")
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="broken.jsonl:1"):
        D.load_pairs_jsonl(tmp_path / "broken.jsonl")
    with pytest.raises(FileNotFoundError):
        D.load_pairs_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="list 0 has 1 completions"):
        D.RankedRecords(["p"], [["a"]], [[1.0]])


def test_pair_table_layout(tok):
    records = D.PreferenceRecords(["1+1=", "12+3="], ["ab", "c"], ["d", "eeee"])
    table = D.PairTable.from_records(records, tok)
    batch = D.pair_batch(table, np.array([0]), ref=np.array([[-1.0, -2.0], [-3.0, -4.0]], dtype=np.float32))
    # left-padded prompt trimmed to its own length, BOS first; completions end with EOS, same width
    assert batch.prompt_ids.tolist() == [tok("1+1=")["input_ids"]]
    assert batch.chosen_ids[0, :3].tolist() == tok("ab", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert batch.chosen_ids.shape == batch.rejected_ids.shape == (1, 3)
    assert batch.rejected_mask.tolist() == [[True, True, False]]
    assert batch.ref_chosen.tolist() == [-1.0] and batch.ref_rejected.tolist() == [-2.0]
    full = D.pair_batch(table, np.array([0, 1]))
    assert full.prompt_mask.tolist()[0] == [False, True, True, True, True, True]
    ids, _, comp, mask = full.completions()
    assert ids.shape[0] == comp.shape[0] == 4 and int(mask.sum()) == 3 + 2 + 2 + 5
    with pytest.raises(ValueError, match="max_length=6"):
        D.PairTable.from_records(records, tok, max_length=6)


def test_list_table_pads_ragged_lists(tok):
    records = D.RankedRecords(["1=", "2="], [["a", "bb"], ["c", "d", "eee"]], [[1, 0], [0, 2, 1]])
    table = D.ListTable.from_records(records, tok)
    assert table.completion_ids.shape == (2, 3, 4) and table.list_mask.tolist() == [[True, True, False], [True] * 3]
    batch = D.list_batch(table, np.array([0, 1]))
    p, pm, ids, m = batch.flat()
    assert ids.shape == (6, 4) and p.shape[0] == 6 and not bool(m[2].any())
    assert batch.labels.tolist() == [[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]]


def test_synthetic_pairs_follow_the_truth_and_flip_at_the_rate():
    clean, truth = S.synthetic_pairs(syn())
    assert np.all(clean.true_prob >= 0.5) and not clean.flipped.any()
    r = truth.reward(clean.chosen) - truth.reward(clean.rejected)
    assert np.all(r >= 0)
    noisy, _ = S.synthetic_pairs(syn(flip_rate=0.3))
    assert abs(noisy.flipped.mean() - 0.3) < 0.06
    assert np.all(noisy.true_prob[noisy.flipped] <= 0.5) and np.all(noisy.true_prob[~noisy.flipped] >= 0.5)
    assert noisy.prompts == clean.prompts                       # same prompts, different labels
    eval_prompts = set(S.synthetic_prompts(syn(), 50, "eval"))
    assert not eval_prompts & set(clean.prompts)


def test_cyclic_truth_is_intransitive_and_invalid_loses():
    truth = S.make_truth(syn(kind="cyclic"))
    # classes a,d=0  b,e=1  c,f=2; class 1 beats class 0, 2 beats 1, 0 beats 2
    assert truth.preference(["bb", "cc", "aa"], ["aa", "bb", "cc"]).tolist() == [1.0, 1.0, 1.0]
    assert truth.preference(["ab", "zz", "zz", "aa"], ["zz", "ab", "z", "dd"]).tolist() == [1.0, 0.0, 0.5, 0.5]
    with pytest.raises(ValueError, match="no reward function"):
        truth.reward(["ab"])
    m = truth.preference_matrix([["aa", "bb", "cc"]])
    assert np.allclose(m + m.transpose(0, 2, 1), 1.0) and np.allclose(np.diagonal(m[0]), 0.5)


def test_utility_truth_and_temperature():
    hard = S.make_truth(syn())
    best, worst = hard.alphabet[int(np.argmax(hard.utility))], hard.alphabet[int(np.argmin(hard.utility))]
    assert hard.reward([best * 3, worst * 2, "xyz", "a"]).tolist()[:2] == [1.0, -1.0]
    assert hard.reward(["xyz", "a"]).tolist() == [-2.0, -2.0]           # invalid: char / too short
    soft = S.make_truth(syn(temperature=0.5))
    p = soft.preference([best * 2], [worst * 2])[0]
    assert np.isclose(p, 1 / (1 + np.exp(-2.0 / 0.5)))


def test_synthetic_lists_labels():
    lists, truth = S.synthetic_lists(syn(num_prompts=20, list_size=5))
    assert all(len(c) == 5 for c in lists.completions)
    assert np.allclose(lists.labels[3], truth.reward(lists.completions[3]))
    cyc, _ = S.synthetic_lists(syn(num_prompts=20, kind="cyclic"))
    assert all(abs(sum(lab)) < 1e-9 for lab in cyc.labels)              # Copeland scores sum to zero


def test_synthetic_config_errors():
    with pytest.raises(ValueError, match="behaviour"):
        S.synthetic_pairs(syn(behaviour=(0.5, 0.5)))
    with pytest.raises(ValueError, match="min_len"):
        S.make_truth(syn(min_len=5, max_len=3))


def test_task_truth_grades_answers_and_builds_pairs():
    cfg = syn(kind="task", task="addition", task_params={"max_digits": 2}, num_prompts=64)
    records, truth = S.synthetic_pairs(cfg)
    prompts = records.prompts[:1] * 4
    answer = int(truth.metadata[prompts[0]]["answer"])
    texts = [f"<answer>{answer}</answer>", f"<answer>{answer + 1}</answer>", f"{answer}", "no number"]
    r = truth.reward(texts, prompts)
    assert r[0] == 1.0 and -1.0 <= r[1] < 0 and r[2] == 1.0 and r[3] == -2.0
    assert truth.valid(texts, prompts).tolist() == [True, True, True, False]
    assert np.all(truth.reward(records.chosen, records.prompts) >= truth.reward(records.rejected, records.prompts))
    assert records.chosen[0].startswith("<answer>")
    assert set(S.synthetic_prompts(cfg, 20, "eval")) <= set(truth.metadata)        # held-out prompts are graded
    with pytest.raises(ValueError, match="numeric task"):
        S.synthetic_pairs(syn(kind="task", task="sorting"))
