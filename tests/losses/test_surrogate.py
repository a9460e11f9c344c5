"""Clipped surrogate, value clipping and KL estimators against hand-computed values."""

import math

import pytest
import torch

from policyopt.losses import kl_estimate, policy_gradient_loss, ppo_clip_loss, value_loss


def test_ppo_clip_hand_values():
    old = torch.zeros(4)
    logp = torch.log(torch.tensor([1.5, 0.5, 1.1, 0.7]))   # ratios
    adv = torch.tensor([1.0, 1.0, -2.0, -1.0])
    loss, clip_frac, kl = ppo_clip_loss(logp, old, adv, 0.2)
    # per sample: min(r A, clip(r) A)
    terms = [min(1.5 * 1, 1.2 * 1), min(0.5 * 1, 0.8 * 1), min(1.1 * -2, 1.1 * -2), min(0.7 * -1, 0.8 * -1)]
    assert float(loss) == pytest.approx(-sum(terms) / 4, rel=1e-6)
    assert float(clip_frac) == pytest.approx(3 / 4)  # 1.5, 0.5 and 0.7 are outside [0.8, 1.2]
    expected_kl = sum((r - 1) - math.log(r) for r in (1.5, 0.5, 1.1, 0.7)) / 4
    assert float(kl) == pytest.approx(expected_kl, rel=1e-6)


def test_ppo_clip_higher_is_asymmetric_and_gradient_vanishes_when_clipped():
    logp = torch.log(torch.tensor([1.25])).requires_grad_()
    loss, _, _ = ppo_clip_loss(logp, torch.zeros(1), torch.ones(1), 0.2, clip_high=0.28)
    assert float(loss.detach()) == pytest.approx(-1.25, rel=1e-6)   # inside [0.8, 1.28]: not clipped
    loss.backward()
    assert float(logp.grad) == pytest.approx(-1.25, rel=1e-6)
    logp2 = torch.log(torch.tensor([1.5])).requires_grad_()
    loss2, _, _ = ppo_clip_loss(logp2, torch.zeros(1), torch.ones(1), 0.2, clip_high=0.28)
    loss2.backward()
    assert float(loss2.detach()) == pytest.approx(-1.28, rel=1e-6)
    assert float(logp2.grad) == 0.0


def test_masked_mean_ignores_masked_tokens():
    logp = torch.zeros(3)
    adv = torch.tensor([1.0, 2.0, 1000.0])
    loss, _, _ = ppo_clip_loss(logp, logp, adv, 0.2, mask=torch.tensor([1, 1, 0]))
    assert float(loss) == pytest.approx(-1.5)
    assert float(policy_gradient_loss(torch.tensor([-1.0, -2.0]), torch.tensor([2.0, 1.0]))) == pytest.approx(2.0)


def test_value_clipping_hand_values():
    v = torch.tensor([2.0, 0.0])
    old = torch.tensor([1.0, 1.0])
    ret = torch.tensor([3.0, 0.0])
    # unclipped errors: (2-3)^2 = 1, (0-0)^2 = 0; clipped values: 1.2, 0.8 -> errors 3.24, 0.64
    assert float(value_loss(v, ret)) == pytest.approx(0.5 * (1 + 0) / 2)
    assert float(value_loss(v, ret, old, clip=0.2)) == pytest.approx(0.5 * (3.24 + 0.64) / 2)


def test_kl_estimators():
    logp = torch.tensor([-1.0])
    ref = torch.tensor([-1.5])
    log_r = -0.5
    assert float(kl_estimate(logp, ref, "k1")) == pytest.approx(0.5)
    assert float(kl_estimate(logp, ref, "k2")) == pytest.approx(0.125)
    assert float(kl_estimate(logp, ref, "k3")) == pytest.approx(math.exp(log_r) - 1 - log_r)
    with pytest.raises(ValueError, match="k4"):
        kl_estimate(logp, ref, "k4")
