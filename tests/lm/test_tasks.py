"""Task families: ground truth, seeding, disjoint held-out splits, JSONL / datasets loading."""

from __future__ import annotations

import json
import re

import pytest

from policyopt.lm.tasks import (
    TASKS,
    PromptDataset,
    check_answer,
    check_countdown,
    evaluate_expression,
    generate,
    generate_mixture,
    solve_countdown,
    split_of,
)


def _recompute(ex):
    """Independent ground truth from the prompt text alone."""
    p, task = ex.prompt, ex.metadata["task"]
    if task == "addition":
        a, b = map(int, re.fullmatch(r"(\d+)\+(\d+)=", p).groups())
        return str(a + b)
    if task == "multiplication":
        a, b = map(int, re.fullmatch(r"(\d+)\*(\d+)=", p).groups())
        return str(a * b)
    if task == "sorting":
        return ",".join(str(v) for v in sorted(int(x) for x in p[5:-1].split(",")))
    if task == "equation":
        a, b, c = re.fullmatch(r"(\d*)x([+-]\d+)?=(-?\d+);x=", p).groups()
        a, b, c = int(a or 1), int(b or 0), int(c)
        assert (c - b) % a == 0
        return str((c - b) // a)
    raise AssertionError(task)


@pytest.mark.parametrize("task", ["addition", "multiplication", "sorting", "equation"])
def test_ground_truth(task):
    for split in ("train", "eval"):
        for ex in generate(task, 200, split, seed=3):
            assert ex.answer == _recompute(ex) == ex.metadata["answer"]
            assert check_answer(ex.answer, ex.metadata)
            assert ex.completion == f"<answer>{ex.answer}</answer>"


@pytest.mark.parametrize("task", ["countdown", "game24"])
def test_countdown_ground_truth(task):
    for ex in generate(task, 60 if task == "countdown" else 25, "eval", seed=5):
        m = ex.metadata
        value, literals = evaluate_expression(ex.answer)
        assert value == m["target"] and sorted(literals) == sorted(m["numbers"])
        assert check_countdown(ex.answer, m["numbers"], m["target"])
        assert ex.prompt == f"make {m['target']} from {','.join(map(str, m['numbers']))}="
        if task == "game24":
            assert m["target"] == 24 and len(m["numbers"]) == 4


def test_countdown_checker_rejects_cheats():
    assert check_countdown("(7-5+2)*3", [3, 5, 7, 2], 12)
    assert not check_countdown("(7-5+2)*3", [3, 5, 7, 2], 13)          # wrong value
    assert not check_countdown("7*3-5-2+0", [3, 5, 7, 2], 14)          # extra number
    assert not check_countdown("7*3-5", [3, 5, 7, 2], 16)              # missing number
    assert not check_countdown("7**2", [7, 2], 49)                     # power not allowed
    assert not check_countdown("__import__('os').getcwd()", [1], 1)    # never executed
    assert not check_countdown("1/0+2", [1, 0, 2], 2)
    assert check_countdown("8/(3-8/3)", [8, 3, 8, 3], 24)             # exact rational arithmetic
    assert solve_countdown([8, 3, 8, 3], 24) is not None
    assert solve_countdown([1, 1, 1, 1], 24) is None
    # division chains are parenthesised so the text evaluates to the value found
    for nums, target in [([8, 3, 8, 3], 24), ([1, 5, 5, 5], 24), ([3, 3, 8, 8], 24), ([2, 7, 9], 4), ([3, 4, 6], 8)]:
        found = solve_countdown(nums, target)
        assert found is not None and check_countdown(found, nums, target), (nums, found)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_splits_are_disjoint_and_seeded(task):
    n_train, n_eval = (60, 30) if task == "game24" else (400, 100)  # game24 instances need a search
    train = generate(task, n_train, "train", seed=0)
    evals = generate(task, n_eval, "eval", seed=0)
    assert {e.prompt for e in train}.isdisjoint(e.prompt for e in evals)
    assert all(split_of(e.prompt) == "eval" for e in evals)
    assert all(split_of(e.prompt) == "train" for e in train)
    assert len({e.prompt for e in evals}) == n_eval  # unique within the split
    assert [e.prompt for e in generate(task, n_eval, "eval", seed=0)] == [e.prompt for e in evals]
    assert [e.prompt for e in generate(task, n_eval, "eval", seed=1)] != [e.prompt for e in evals]
    # a shorter request is a prefix of a longer one (stable evaluation subsets)
    assert [e.prompt for e in generate(task, 30, "eval", seed=0)] == [e.prompt for e in evals[:30]]


def test_different_train_seeds_never_reach_eval_prompts():
    evals = {e.prompt for e in generate("addition", 300, "eval", seed=0, max_digits=2)}
    for seed in range(3):
        train = generate("addition", 2000, "train", seed=seed, max_digits=2, unique=False)
        assert evals.isdisjoint(e.prompt for e in train)


def test_generate_errors():
    with pytest.raises(KeyError, match="unknown task"):
        generate("division", 3)
    with pytest.raises(ValueError, match="split must be"):
        generate("addition", 3, "test")
    with pytest.raises(ValueError, match="could only find"):
        generate("addition", 50, "eval", max_digits=1)  # only ~10 of 100 one-digit sums are eval prompts


def test_mixture_counts_and_order():
    mix = generate_mixture({"addition": 30, "sorting": 20}, "eval", seed=2)
    assert sum(e.metadata["task"] == "addition" for e in mix) == 30 and len(mix) == 50
    assert [e.prompt for e in mix] == [e.prompt for e in generate_mixture({"addition": 30, "sorting": 20},
                                                                          "eval", seed=2)]
    assert [e.metadata["task"] for e in mix[:10]] != ["addition"] * 10  # shuffled


def test_jsonl_and_hf_datasets(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"question": f"q{i}", "solution": str(i), "level": i % 3} for i in range(50)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    ds = PromptDataset.from_jsonl(path, prompt_key="question", answer_key="solution", task="mine")
    assert len(ds) == 50 and ds[3].prompt == "q3" and ds[3].answer == "3"
    assert ds[3].metadata == {"level": 0, "task": "mine", "answer": "3"}
    train, evals = ds.split("train"), ds.split("eval")
    assert len(train) + len(evals) == 50 and {*train.prompts}.isdisjoint(evals.prompts)
    out = tmp_path / "round.jsonl"
    ds.to_jsonl(out)
    assert PromptDataset.from_jsonl(out).answers == ds.answers

    import datasets
    hf = datasets.Dataset.from_list(rows)
    ds2 = PromptDataset.from_hf(hf, prompt_key="question", answer_key="solution")
    assert ds2.prompts == ds.prompts and ds2[7].metadata["level"] == 1

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        PromptDataset.from_jsonl(bad)
    with pytest.raises(KeyError, match="record 0 has no 'prompt'"):
        PromptDataset.from_records([{"text": "x"}])
