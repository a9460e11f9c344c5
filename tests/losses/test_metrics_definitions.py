"""docs/metrics.md holds on both sides: classic PPO and the LM loss compute ``stats/clip_frac`` and
``stats/approx_kl`` by the same definition from the same clipped objective, and ``stats/kl_ref`` is the
k3 token mean whatever the penalty's estimator."""

import math

import pytest
import torch

from policyopt.losses.policy_lm import lm_policy_loss
from policyopt.losses.surrogate import clipped_objective, ppo_clip_loss

RATIOS = [1.5, 0.5, 1.1, 0.7]
ADV = [1.0, -1.0, -2.0, 1.0]   # 1.5 with A>0 and 0.5 with A<0: outside the range, clipped branch active;
                               # 0.7 with A>0: outside but the unclipped branch is the minimum (not active)


def test_clip_frac_and_approx_kl_mean_the_same_on_the_classic_and_lm_side():
    logp = torch.log(torch.tensor(RATIOS))
    old, adv = torch.zeros(4), torch.tensor(ADV)
    _, clip_classic, kl_classic = ppo_clip_loss(logp, old, adv, 0.2)
    _, m = lm_policy_loss(logp[None], old[None], adv[None], torch.ones(1, 4, dtype=torch.bool), clip_low=0.2)
    assert float(clip_classic) == float(m["clip_fraction"]) == pytest.approx(3 / 4)   # outside [0.8, 1.2]
    expected_kl = sum((r - 1) - math.log(r) for r in RATIOS) / 4
    assert float(kl_classic) == pytest.approx(expected_kl, rel=1e-6)
    assert float(m["approx_kl_old"]) == pytest.approx(expected_kl, rel=1e-6)


def test_both_losses_are_the_shared_clipped_objective():
    logp = torch.log(torch.tensor(RATIOS))
    adv = torch.tensor(ADV)
    per, outside = clipped_objective(logp.exp(), adv, 0.2, 0.28)
    loss_classic, _, _ = ppo_clip_loss(logp, torch.zeros(4), adv, 0.2, clip_high=0.28)
    loss_lm, _ = lm_policy_loss(logp[None], torch.zeros(1, 4), adv[None], torch.ones(1, 4, dtype=torch.bool),
                                clip_low=0.2, clip_high=0.28, aggregation="token_mean")
    assert float(loss_classic) == float(per.mean()) == pytest.approx(float(loss_lm), rel=1e-7)
    assert outside.tolist() == [True, True, False, True]


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_kl_ref_is_the_k3_token_mean_whatever_the_penalty_estimator(estimator):
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.9]]))
    ref = torch.log(torch.tensor([[0.25, 0.5, 0.9]]))
    mask = torch.tensor([[True, True, False]])
    _, m = lm_policy_loss(logp, logp.detach(), torch.tensor([1.0]), mask, ref_logp=ref, kl_coef=0.1,
                          kl_estimator=estimator)
    log_r = [math.log(0.25 / 0.5), math.log(0.5 / 0.25)]          # log(pi_ref / pi) on the 2 trained tokens
    assert float(m["kl_ref"]) == pytest.approx(sum(math.exp(x) - 1 - x for x in log_r) / 2, rel=1e-6)
