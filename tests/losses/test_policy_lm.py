"""Token-level LM policy losses against hand-computed values: aggregation modes, GSPO's sequence
ratio, clip-higher, dual clip, KL in the loss or the reward, token GAE, selective loss masking, and
the gradients of clipped and masked tokens."""

import math

import pytest
import torch

from policyopt.losses.policy_lm import (
    aggregate_tokens,
    dynamic_kl_coef,
    first_position_after,
    kl_penalized_rewards,
    kl_token_rewards,
    lm_policy_loss,
    selective_loss_mask,
    sequence_log_ratio,
    token_gae,
)
from policyopt.losses.value import value_loss


def test_aggregation_modes():
    v = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    m = torch.tensor([[True, True, True], [True, False, False]])
    # per-sequence means 2 and 4
    assert float(aggregate_tokens(v, m, "sequence_mean")) == pytest.approx((2.0 + 4.0) / 2)
    assert float(aggregate_tokens(v, m, "token_mean")) == pytest.approx(10.0 / 4)
    assert float(aggregate_tokens(v, m, "fixed_length", max_length=5)) == pytest.approx(10.0 / (2 * 5))
    empty_row = torch.tensor([[True, True, True], [False, False, False]])
    assert float(aggregate_tokens(v, empty_row, "sequence_mean")) == pytest.approx(2.0)  # empty row left out
    with pytest.raises(ValueError, match="max_length"):
        aggregate_tokens(v, m, "fixed_length")
    with pytest.raises(ValueError, match="aggregation"):
        aggregate_tokens(v, m, "sum")


def test_gspo_sequence_ratio_is_exp_mean_token_log_ratio_over_mask():
    logp = torch.tensor([[0.1, 0.3, 9.0]])
    old = torch.zeros(1, 3)
    m = torch.tensor([[True, True, False]])
    s = sequence_log_ratio(logp, old, m).exp()
    assert float(s) == pytest.approx(math.exp((0.1 + 0.3) / 2), rel=1e-6)
    assert float(s) == pytest.approx(math.sqrt(math.exp(0.1) * math.exp(0.3)), rel=1e-6)  # geometric mean


def test_token_level_clipped_loss_hand_values_and_gradients():
    ratios = [1.5, 0.9, 3.0]
    logp = torch.log(torch.tensor([ratios])).requires_grad_()
    old = torch.zeros(1, 3)
    m = torch.tensor([[True, True, False]])
    loss, met = lm_policy_loss(logp, old, torch.tensor([1.0]), m, clip_low=0.2)
    # token 0: min(1.5, 1.2) = 1.2 (clipped); token 1: min(0.9, 0.9) = 0.9; token 2 masked
    assert float(loss.detach()) == pytest.approx(-(1.2 + 0.9) / 2, rel=1e-6)
    assert float(met["clip_fraction"]) == pytest.approx(0.5)
    assert float(met["ratio_mean"]) == pytest.approx((1.5 + 0.9) / 2)
    loss.backward()
    # clipped token: zero gradient; masked token: zero gradient; token 1: d(-r A / 2)/dlogp = -0.9 / 2
    assert logp.grad.tolist()[0] == pytest.approx([0.0, -0.45, 0.0])


def test_clip_higher_and_dual_clip():
    logp = torch.log(torch.tensor([[1.25]]))
    m = torch.ones(1, 1, dtype=torch.bool)
    sym, _ = lm_policy_loss(logp, torch.zeros(1, 1), torch.tensor([1.0]), m, clip_low=0.2)
    asym, _ = lm_policy_loss(logp, torch.zeros(1, 1), torch.tensor([1.0]), m, clip_low=0.2, clip_high=0.28)
    assert float(sym) == pytest.approx(-1.2) and float(asym) == pytest.approx(-1.25)
    big = torch.log(torch.tensor([[5.0]]))
    # A = -1, r = 5: min(-5, -1.2) = -5 -> loss 5; dual clip c = 3 bounds it: max(-5, -3) -> loss 3
    plain, _ = lm_policy_loss(big, torch.zeros(1, 1), torch.tensor([-1.0]), m)
    dual, _ = lm_policy_loss(big, torch.zeros(1, 1), torch.tensor([-1.0]), m, dual_clip=3.0)
    assert float(plain) == pytest.approx(5.0, rel=1e-6) and float(dual) == pytest.approx(3.0)


def test_gspo_sequence_clipping_and_gspo_token_equivalence():
    m = torch.tensor([[True, True, False]])
    base = torch.tensor([[0.1, 0.3, 5.0]])
    old = torch.zeros(1, 3)
    s = math.exp(0.2)                                            # 1.2214 > 1.2
    lp = base.clone().requires_grad_()
    loss, met = lm_policy_loss(lp, old, torch.tensor([1.0]), m, ratio_level="sequence")
    assert float(loss.detach()) == pytest.approx(-1.2, rel=1e-6)   # clipped: whole sequence, zero grad
    assert float(met["clip_fraction"]) == 1.0
    loss.backward()
    assert lp.grad.abs().max() == 0.0
    grads = []
    for level in ("sequence", "sequence_token"):
        lp = base.clone().requires_grad_()
        loss, _ = lm_policy_loss(lp, old, torch.tensor([-1.0]), m, ratio_level=level)
        assert float(loss.detach()) == pytest.approx(s, rel=1e-6)           # min(-s, -1.2) = -s -> loss s
        loss.backward()
        grads.append(lp.grad.clone())
    # d(s)/d logp_t = s / |y| on the two unmasked tokens, for GSPO and GSPO-token alike
    assert grads[0].tolist()[0] == pytest.approx([s / 2, s / 2, 0.0], rel=1e-6)
    assert torch.allclose(grads[0], grads[1])
    with pytest.raises(ValueError, match="one advantage per sequence"):
        lm_policy_loss(base, old, torch.zeros(1, 3), m, ratio_level="sequence")


def test_on_policy_step_is_reinforce_and_dr_grpo_constant():
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.1, -0.2]], requires_grad=True)
    m = torch.tensor([[True, True, True], [True, False, False]])
    adv = torch.tensor([2.0, -1.0])
    loss, _ = lm_policy_loss(logp, logp.detach(), adv, m, aggregation="fixed_length", max_length=4)
    # ratio 1: -sum(A) / (B * L_max)
    assert float(loss.detach()) == pytest.approx(-(3 * 2.0 - 1.0) / (2 * 4))
    loss.backward()
    # d/dlogp of -A * ratio / (B * L_max): -2 / 8 on row 0, +1 / 8 on row 0 of row 1, 0 where masked
    assert logp.grad.flatten().tolist() == pytest.approx([-0.25, -0.25, -0.25, 0.125, 0.0, 0.0])


def test_kl_in_the_loss_and_in_the_reward():
    logp = torch.tensor([[-1.0, -2.0]])
    ref = logp - 0.5
    m = torch.tensor([[True, True]])
    k3 = math.exp(-0.5) - 1 + 0.5                                   # log r = ref - logp = -0.5
    loss, met = lm_policy_loss(logp, logp, torch.zeros(1), m, ref_logp=ref, kl_coef=0.1)
    assert float(loss.detach()) == pytest.approx(0.1 * k3, rel=1e-6)         # A = 0: only the KL term
    assert float(met["kl_ref"]) == pytest.approx(k3, rel=1e-6)
    with pytest.raises(ValueError, match="ref_logp"):
        lm_policy_loss(logp, logp, torch.zeros(1), m, kl_coef=0.1)
    lp = torch.tensor([[-1.0, -2.0, -3.0]])
    rf = torch.tensor([[-1.5, -2.0, -9.0]])
    mk = torch.tensor([[True, True, False]])
    # k1 = logp - ref = (0.5, 0, masked)
    assert kl_penalized_rewards(torch.tensor([1.0]), lp, rf, mk, 0.1).tolist() == pytest.approx([0.95])
    assert kl_token_rewards(torch.tensor([1.0]), lp, rf, mk, 0.1).flatten().tolist() == pytest.approx(
        [-0.05, 1.0, 0.0])                                          # reward lands on the last valid token


def test_grpo_d_dynamic_kl_schedule():
    assert dynamic_kl_coef(0, 100, 0.0, 0.04) == 0.0
    assert dynamic_kl_coef(10, 100, 0.0, 0.04, warmup_fraction=0.5) == pytest.approx(0.04 * 0.2)
    cosine = 0.04 * (1 - math.cos(0.2 * math.pi)) / 2
    assert dynamic_kl_coef(10, 100, 0.0, 0.04, 0.5, "cosine") == pytest.approx(cosine)
    assert dynamic_kl_coef(80, 100, 0.0, 0.04, warmup_fraction=0.5) == pytest.approx(0.04)


def _gae_reference(r, v, gamma, lam):
    adv, last = [0.0] * len(r), 0.0
    for t in reversed(range(len(r))):
        nv = v[t + 1] if t + 1 < len(r) else 0.0
        last = r[t] + gamma * nv - v[t] + gamma * lam * last
        adv[t] = last
    return adv


def test_token_gae_hand_values_holes_and_long_sequences():
    r = torch.tensor([[0.0, 0.0, 1.0]])
    v = torch.tensor([[0.5, 0.6, 0.7]])
    adv, ret = token_gae(r, v, torch.ones(1, 3, dtype=torch.bool), gamma=1.0, lam=0.5)
    # deltas: 0.6-0.5 = 0.1, 0.7-0.6 = 0.1, 1-0.7 = 0.3; A2 = 0.3, A1 = 0.1 + 0.15, A0 = 0.1 + 0.125
    assert adv.flatten().tolist() == pytest.approx([0.225, 0.25, 0.3])
    assert ret.flatten().tolist() == pytest.approx([0.725, 0.85, 1.0])
    holes = torch.tensor([[True, False, True, True]])
    r_h, v_h = torch.tensor([[0.0, 99.0, 0.0, 1.0]]), torch.tensor([[0.5, 99.0, 0.6, 0.7]])
    adv_h, _ = token_gae(r_h, v_h, holes, 1.0, 0.5)
    assert adv_h.flatten().tolist() == pytest.approx([0.225, 0.0, 0.25, 0.3])
    g = torch.Generator().manual_seed(0)
    T = 600                                                          # > one 256-token chunk
    rr = torch.randn(2, T, generator=g, dtype=torch.float64)
    vv = torch.randn(2, T, generator=g, dtype=torch.float64)
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[1, 450:] = False                                            # right padding
    adv_l, _ = token_gae(rr, vv, mask, gamma=0.99, lam=0.95)
    ref0 = _gae_reference(rr[0].tolist(), vv[0].tolist(), 0.99, 0.95)
    assert adv_l[0].tolist() == pytest.approx(ref0, rel=1e-9)
    ref1 = _gae_reference(rr[1, :450].tolist(), vv[1, :450].tolist(), 0.99, 0.95)
    assert adv_l[1, :450].tolist() == pytest.approx(ref1, rel=1e-9) and adv_l[1, 450:].abs().max() == 0


def test_value_loss_with_clipping_on_token_grid():
    v = torch.tensor([[2.0, 0.0, 7.0]])
    old = torch.tensor([[1.0, 1.0, 0.0]])
    ret = torch.tensor([[3.0, 0.0, 0.0]])
    m = torch.tensor([[True, True, False]])
    # errors 1, 0; clipped values 1.2, 0.8 -> errors 3.24, 0.64; max -> 3.24, 0.64
    assert float(value_loss(v, ret, old, clip=0.2, mask=m)) == pytest.approx(0.5 * (3.24 + 0.64) / 2)


def test_selective_loss_masking_zeroes_loss_and_gradient():
    tokens = torch.tensor([[5, 7, 9, 2], [5, 5, 5, 5], [7, 1, 0, 0]])
    full = torch.ones(3, 4, dtype=torch.bool)
    assert first_position_after(tokens, 7).tolist() == [2, -1, 1]
    mask = torch.tensor([[True] * 4, [True] * 4, [True, False, False, False]])
    pos = first_position_after(tokens, 7, mask)
    assert pos.tolist() == [2, -1, -1]
    out = selective_loss_mask(full, tokens, drop_token_ids=[2], drop_positions=pos)
    assert out.tolist() == [[True, True, False, False], [True] * 4, [True, True, True, True]]
    logp = torch.zeros(3, 4, requires_grad=True)
    loss, _ = lm_policy_loss(logp, logp.detach(), torch.ones(3), out, aggregation="token_mean")
    loss.backward()
    assert (logp.grad[~out] == 0).all() and (logp.grad[out] != 0).all()


def test_token_gae_random_masks_with_holes_match_the_reference_loop():
    g = torch.Generator().manual_seed(1)
    r = torch.randn(6, 40, generator=g, dtype=torch.float64)
    v = torch.randn(6, 40, generator=g, dtype=torch.float64)
    mask = torch.rand(6, 40, generator=g) > 0.3
    adv, ret = token_gae(r, v, mask, gamma=0.97, lam=0.9)
    for b in range(6):
        idx = torch.nonzero(mask[b]).squeeze(-1)
        ref = _gae_reference(r[b, idx].tolist(), v[b, idx].tolist(), 0.97, 0.9)
        assert adv[b, idx].tolist() == pytest.approx(ref, rel=1e-9, abs=1e-12)
        assert adv[b, ~mask[b]].abs().max() == 0 and ret[b, ~mask[b]].abs().max() == 0
