"""Built-in rewards and the reward guard: every documented outcome."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from policyopt.core.config import ConfigError, build
from policyopt.lm.reward import (
    EXCEPTION,
    INVALID,
    NONE,
    NONFINITE,
    OK,
    RewardFn,
    RewardFnError,
    RewardGuard,
    RewardGuardAbort,
    RewardGuardConfig,
)
from policyopt.lm.rewards import (
    AnswerMatch,
    CompositeReward,
    FormatReward,
    LengthPenalty,
    TaskCorrectness,
    default_task_reward,
    extract_answer,
)

P = ["q1", "q2", "q3", "q4"]
C = ["a", "b", "c", "d"]
M = [{}, {}, {}, {}]


def const(values):
    return lambda prompts, completions, metadata: list(values)


# ----------------------------------------------------------------------------- extraction / built-ins


@pytest.mark.parametrize("text, want", [
    ("<answer>42</answer>", "42"),
    ("think <answer>1</answer> then <answer> 7 </answer>", "7"),
    ("so \\boxed{3/4}.", "3/4"),
    ("\\boxed{\\frac{1}{2}} and \\boxed{x^{2}}", "x^{2}"),
    ("<answer>\\boxed{12}</answer>", "12"),
    ("  plain 5 ", "plain 5"),
    ("\\boxed{unclosed", "\\boxed{unclosed"),
])
def test_extract_answer(text, want):
    assert extract_answer(text) == want


def test_answer_match_exact_and_numeric():
    comps = ["<answer>1,234</answer>", "\\boxed{1234.0}", "1234", "<answer>12</answer>", "abc"]
    meta = [{"answer": "1234"}] * 5
    assert AnswerMatch("numeric")(P[:1] * 5, comps, meta) == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert AnswerMatch("exact")(P[:1] * 5, comps, meta) == [0.0, 0.0, 1.0, 0.0, 0.0]
    # exact normalises whitespace, $ and a trailing period; a missing reference is unscorable
    assert AnswerMatch("exact")(["q", "q"], ["<answer> $x  + 1$. </answer>", "x"],
                                [{"answer": "x + 1"}, {}]) == [1.0, None]
    assert AnswerMatch("numeric", abs_tol=0.01)(["q"], ["3.141"], [{"answer": "3.14"}]) == [1.0]
    assert AnswerMatch("numeric")(["q"], ["3"], [{"answer": "not a number"}]) == [None]


def test_task_correctness_verifies_countdown_expressions():
    meta = {"task": "countdown", "numbers": [3, 5, 7], "target": 26, "answer": "3*7+5"}
    comps = ["<answer>5+7*3</answer>", "<answer>3*7+5+0</answer>", "<answer>26</answer>",
             "<answer>(5+7)*3</answer>", "<answer>__import__('os')</answer>"]
    assert TaskCorrectness()(["q"] * 5, comps, [meta] * 5) == [1.0, 0.0, 0.0, 0.0, 0.0]
    add = {"task": "addition", "answer": "100"}
    assert TaskCorrectness()(["q", "q"], ["<answer>100</answer>", "<answer>0100</answer>"], [add, add]) == [1.0, 1.0]


def test_format_and_length():
    fmt = FormatReward(pattern=r"<answer>\d+</answer>")
    assert fmt(["q"] * 3, ["<answer>12</answer>", "<answer>x</answer>", "12"], M[:3]) == [1.0, 0.0, 0.0]
    tags = FormatReward(required_tags=("think", "answer"))
    assert tags(["q"] * 2, ["<think>a</think><answer>1</answer>", "<answer>1</answer>"], M[:2]) == [1.0, 0.0]
    pen = LengthPenalty(target=4, coef=0.5)
    assert pen(["q"] * 3, ["abc", "abcd", "abcdefgh"], M[:3]) == [0.0, 0.0, -0.5]
    with pytest.raises(ValueError, match="target"):
        LengthPenalty(target=0)


def test_builtins_satisfy_protocol():
    for fn in (AnswerMatch(), TaskCorrectness(), FormatReward(), LengthPenalty(), default_task_reward()):
        assert isinstance(fn, RewardFn)


# ----------------------------------------------------------------------------- guard outcomes


def test_guard_scores_numbers_of_any_numeric_type():
    guard = RewardGuard(const([1, 0.5, True, np.float32(2.0)]))
    res = guard(P, C, M)
    assert res.values.dtype == torch.float32
    assert res.values.tolist() == [1.0, 0.5, 1.0, 2.0]
    assert res.scorable.all() and res.num_unscorable == 0 and res.unscorable_fraction == 0.0
    res = RewardGuard(const(torch.tensor([0.0, 1.0, 2.0, 3.0])))(P, C, M)
    assert res.values.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_guard_none_and_nan_are_unscorable_not_zero():
    guard = RewardGuard(const([1.0, None, float("nan"), 0.0]))
    res = guard(P, C, M)
    assert res.scorable.tolist() == [True, False, False, True]
    assert math.isnan(res.values[1]) and math.isnan(res.values[2])
    assert res.outcome.tolist() == [OK, NONE, NONE, OK]
    assert res.num_none == 2 and res.num_errors == 0 and res.unscorable_fraction == 0.5
    assert res.filled(-1.0).tolist() == [1.0, -1.0, -1.0, 0.0]
    m = res.metrics()
    assert m["reward/unscorable_frac"] == 0.5 and m["reward/mean"] == 0.5  # mean over scorable only
    assert guard.unscorable_fraction == 0.5


def test_guard_non_numeric_and_inf_are_unscorable_errors(caplog):
    guard = RewardGuard(const(["1.0", [1.0], float("inf"), 2.0]), RewardGuardConfig(max_error_rate=1.0))
    with caplog.at_level(logging.WARNING, logger="policyopt.lm.reward"):
        res = guard(P, C, M)
    assert res.outcome.tolist() == [INVALID, INVALID, NONFINITE, OK]
    assert res.scorable.tolist() == [False, False, False, True]
    assert res.num_errors == 3 and guard.total_errors == 3
    assert "non_numeric" in caplog.text and "'1.0'" in caplog.text
    assert {r["completion"] for r in guard.recent_errors} == {"a", "b", "c"}


def test_guard_wrong_length_and_container_are_clear_errors():
    with pytest.raises(RewardFnError, match="returned 3 values for 4 completions"):
        RewardGuard(const([1.0, 2.0, 3.0]))(P, C, M)
    with pytest.raises(RewardFnError, match="returned float"):
        RewardGuard(lambda p, c, m: 1.0)(P, C, M)
    with pytest.raises(RewardFnError, match="returned str"):
        RewardGuard(lambda p, c, m: "1234")(P, C, M)
    with pytest.raises(RewardFnError, match=r"shape \(2, 2\)"):
        RewardGuard(lambda p, c, m: np.ones((2, 2)))(P, C, M)


def test_guard_exception_isolates_the_offending_example(caplog):
    def flaky(prompts, completions, metadata):
        if "c" in completions:
            raise RuntimeError("judge timed out")
        return [float(len(x)) for x in completions]

    guard = RewardGuard(flaky, RewardGuardConfig(max_error_rate=1.0), name="judge")
    with caplog.at_level(logging.WARNING, logger="policyopt.lm.reward"):
        res = guard(P, C, M)
    assert res.scorable.tolist() == [True, True, False, True]
    assert res.outcome.tolist() == [OK, OK, EXCEPTION, OK]
    assert res.values[[0, 1, 3]].tolist() == [1.0, 1.0, 1.0]
    assert res.num_errors == 1
    assert "judge" in caplog.text and "judge timed out" in caplog.text and "'q3'" in caplog.text
    # without isolation the whole batch is unscorable (and counted), still never 0
    guard = RewardGuard(flaky, RewardGuardConfig(max_error_rate=1.0, isolate_errors=False))
    res = guard(P, C, M)
    assert not res.scorable.any() and res.num_errors == 4 and torch.isnan(res.values).all()


def test_guard_aborts_past_error_rate():
    def sometimes(prompts, completions, metadata):
        return ["bad" if c == "x" else 1.0 for c in completions]

    cfg = RewardGuardConfig(max_error_rate=0.25, min_examples=8, window_examples=16)
    guard = RewardGuard(sometimes, cfg)
    guard(["q"] * 4, ["x", "y", "y", "y"], [{}] * 4)  # 25%: below min_examples, fine
    guard(["q"] * 4, ["x", "y", "y", "y"], [{}] * 4)  # 25% of 8: not past the threshold
    with pytest.raises(RewardGuardAbort, match=r"error rate 33.3% > max_error_rate 25.0%"):
        guard(["q"] * 4, ["x", "x", "y", "y"], [{}] * 4)
    # None/NaN are not errors; they abort only through max_unscorable_rate
    lazy = RewardGuard(const([None] * 4), RewardGuardConfig(min_examples=4))
    assert lazy(P, C, M).num_unscorable == 4
    strict = RewardGuard(const([None] * 4), RewardGuardConfig(min_examples=4, max_unscorable_rate=0.5))
    with pytest.raises(RewardGuardAbort, match="unscorable rate"):
        strict(P, C, M)


def test_guard_window_forgets_old_errors():
    fn = lambda p, c, m: ["bad" if x == "x" else 1.0 for x in c]  # noqa: E731
    guard = RewardGuard(fn, RewardGuardConfig(max_error_rate=0.3, min_examples=4, window_examples=8))
    guard(["q"] * 4, ["x", "y", "y", "y"], [{}] * 4)
    for _ in range(5):
        guard(["q"] * 4, ["y"] * 4, [{}] * 4)
    guard(["q"] * 4, ["x", "y", "y", "y"], [{}] * 4)
    assert guard.total_errors == 2 and guard.total_examples == 28


def test_composite_reports_components_and_guards_each():
    def broken(prompts, completions, metadata):
        raise ValueError("boom")

    comp = CompositeReward({"correct": AnswerMatch("numeric"), "fmt": FormatReward()},
                           {"correct": 1.0, "fmt": 0.25})
    comps = ["<answer>3</answer>", "3", "<answer>4</answer>"]
    meta = [{"answer": "3"}] * 3
    assert comp(["q"] * 3, comps, meta) == [1.25, 1.0, 0.25]
    res = RewardGuard(comp)(["q"] * 3, comps, meta)
    assert res.values.tolist() == [1.25, 1.0, 0.25]
    assert res.components["correct"].tolist() == [1.0, 1.0, 0.0]
    assert res.components["fmt"].tolist() == [1.0, 0.0, 1.0]
    assert res.metrics()["reward/component/fmt"] == pytest.approx(2 / 3)
    bad = CompositeReward({"correct": AnswerMatch("numeric"), "judge": broken})
    res = RewardGuard(bad, RewardGuardConfig(max_error_rate=1.0))(["q"] * 3, comps, meta)
    assert not res.scorable.any() and res.components["correct"].tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(KeyError, match="unknown components"):
        CompositeReward({"a": FormatReward()}, {"b": 1.0})


def test_guard_config_validation_names_the_key():
    with pytest.raises(ConfigError, match="reward.max_error_rate"):
        build(RewardGuardConfig, {"max_error_rate": 1.5}, "reward")
    with pytest.raises(ValueError, match="differ in length"):
        RewardGuard(const([1.0]))(["a", "b"], ["a"], [{}])
