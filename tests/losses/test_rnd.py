"""RND's pure pieces against hand-computed values (Burda et al., 2018)."""

import pytest
import torch

from policyopt.losses.rnd import (
    combine_advantages,
    discounted_forward_sum,
    prediction_error,
    predictor_loss,
    whiten_clip,
)


def test_whiten_clip():
    x = torch.tensor([[3.0, -10.0], [1.0, 0.5]])
    out = whiten_clip(x, torch.tensor([1.0, 0.0]), torch.tensor([4.0, 1.0]), clip=5.0, eps=0.0)
    # (3-1)/2 = 1, (-10-0)/1 = -10 -> clipped to -5; (1-1)/2 = 0, 0.5/1 = 0.5
    assert out.tolist() == [[1.0, -5.0], [0.0, 0.5]]


def test_prediction_error_is_mean_over_features_and_stops_target_gradients():
    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    target = torch.tensor([[0.0, 0.0], [0.0, 3.0]], requires_grad=True)
    err = prediction_error(pred, target)
    assert err.tolist() == [2.5, 4.5]            # (1 + 4) / 2, (0 + 9) / 2
    err.sum().backward()
    assert target.grad is None
    assert pred.grad.tolist() == [[1.0, 2.0], [0.0, -3.0]]   # d/dp (p - t)^2 / 2 = p - t


def test_predictor_loss_uses_only_kept_samples():
    pred, target = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.zeros(2, 2)
    assert float(predictor_loss(pred, target)) == pytest.approx(1.25)
    assert float(predictor_loss(pred, target, torch.tensor([True, False]))) == pytest.approx(2.5)
    assert float(predictor_loss(pred, target, torch.tensor([False, True]))) == 0.0
    assert float(predictor_loss(pred, target, torch.tensor([False, False]))) == 0.0


def test_discounted_forward_sum_runs_through_time_and_carries_over():
    rewards = torch.tensor([[1.0, 2.0], [3.0, 4.0]])      # [T=2, N=2]
    sums, last = discounted_forward_sum(rewards, torch.tensor([10.0, 0.0]), gamma=0.5)
    # t=0: 0.5*10 + 1 = 6, 0.5*0 + 2 = 2; t=1: 0.5*6 + 3 = 6, 0.5*2 + 4 = 5
    assert sums.tolist() == [[6.0, 2.0], [6.0, 5.0]]
    assert last.tolist() == [6.0, 5.0]


def test_combine_advantages():
    out = combine_advantages(torch.tensor([1.0, -1.0]), torch.tensor([3.0, 0.5]), ext_coef=2.0, int_coef=1.0)
    assert out.tolist() == [5.0, -1.5]
