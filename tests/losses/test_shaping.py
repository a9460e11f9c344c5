"""Reward shaping functions against hand-computed values."""

import math

import pytest
import torch

from policyopt.losses.shaping import (
    cosine_hardness,
    cot_trigger_rewards,
    difficulty_weights,
    group_length_reward,
    length_penalty,
    optimal_tool_calls,
    overlong_penalty,
    serial_group_rewards,
    tool_call_rewards,
)


def test_dapo_overlong_penalty():
    # L_max = 20, L_cache = 5: soft zone (15, 20]
    pen = overlong_penalty(torch.tensor([10, 15, 16, 20, 21]), max_length=20, cache_length=5)
    assert pen.tolist() == pytest.approx([0.0, 0.0, (15 - 16) / 5, (15 - 20) / 5, -1.0])
    with pytest.raises(ValueError, match="cache_length"):
        overlong_penalty(torch.tensor([1]), 10, 11)


def test_length_penalties():
    out = length_penalty(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([10, 50, 50]), 100, 0.5,
                         correct=torch.tensor([True, True, False]))
    assert out.tolist() == pytest.approx([1 - 0.05, 1 - 0.25, 0.0])
    # Kimi k1.5: lambda = 0.5 - (len - 10) / (30 - 10) = (0.5, 0, -0.5); wrong -> min(0, lambda)
    lens = torch.tensor([[10, 20, 30], [10, 20, 30], [7, 7, 7]])
    correct = torch.tensor([[True, False, True], [False, True, False], [True, True, True]])
    assert group_length_reward(lens, correct).flatten().tolist() == pytest.approx(
        [0.5, 0.0, -0.5, 0.0, 0.0, -0.5, 0.0, 0.0, 0.0])


def test_s_grpo_decaying_serial_rewards():
    correct = torch.tensor([[False, True, True, False, True], [False, False, False, False, False]])
    # correct exits in order get 1, 1/2, 1/4 ...
    assert serial_group_rewards(correct).tolist() == [[0, 1, 0.5, 0, 0.25], [0, 0, 0, 0, 0]]
    mask = torch.tensor([[True, False, True, True, True], [True] * 5])
    assert serial_group_rewards(correct, mask)[0].tolist() == [0, 0, 1, 0, 0.5]


def test_otc_tool_rewards():
    m = torch.tensor([0.0, 1.0, 2.0])
    # OTC-PPO, c = 1: cos(0) = 1, cos(pi / 3) = 0.5, cos(2 pi / 5) = 0.30902
    expected = [1.0, 0.5, math.cos(2 * math.pi / 5)]
    assert tool_call_rewards(torch.ones(3), m).tolist() == pytest.approx(expected)
    # OTC-GRPO with optimal n = 2: f(m, 2) = 4m / (m + 2): m=0 -> 0, 1 -> 4/3, 2 -> 2, 4 -> 8/3
    calls = torch.tensor([[0.0, 1.0, 2.0, 4.0]])
    r = tool_call_rewards(torch.ones(1, 4), calls, optimal_calls=torch.tensor([[2.0]]))
    s60 = math.sin(math.pi / 3)
    assert r.tolist()[0] == pytest.approx([0.0, s60, 1.0, s60], abs=1e-6)
    # n = 0 (best correct answer used no tool): m = 0 -> 1, else the cosine; wrong answers -> 0
    r0 = tool_call_rewards(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]),
                           optimal_calls=torch.tensor(0.0), alpha=2.0)
    assert r0.tolist() == pytest.approx([2.0, 1.0, 0.0])
    best = optimal_tool_calls(torch.tensor([[3, 1, 2], [1, 1, 1]]),
                              torch.tensor([[True, False, True], [False, False, False]]))
    assert best[0] == 2.0 and math.isnan(float(best[1]))


def test_adacot_trigger_penalties():
    base = torch.ones(4)
    used = torch.tensor([True, False, True, False])
    need = torch.tensor([True, True, False, False])
    out = cot_trigger_rewards(base, used, need, format_ok=torch.tensor([True, True, True, False]),
                              alpha_miss=0.3, alpha_over=0.2, gamma_format=0.5)
    assert out.tolist() == pytest.approx([1.0, 0.7, 0.8, 0.5])


def test_grpo_s_difficulty_weights():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[0.0, 1.0], [2.0, 0.0], [-1.0, 0.0]])
    assert cosine_hardness(x, y).tolist() == pytest.approx([0.5, 0.0, 1.0])
    # w = 1 + h + sigmoid(0) = (1.5, 2.5) -> / mean 2 = (0.75, 1.25)
    w = difficulty_weights(torch.tensor([0.0, 1.0]), torch.zeros(2))
    assert w.tolist() == pytest.approx([0.75, 1.25])
    raw = difficulty_weights(torch.tensor([0.0, 1.0]), torch.zeros(2), normalize=False)
    assert raw.tolist() == [1.5, 2.5]
