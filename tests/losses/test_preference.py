"""Preference and reward-model losses against hand-computed values: DPO as in the paper, cDPO/rDPO,
IPO's target 1/(2 tau), SLiC-HF, RRHF, LiPO (list of two = pairwise; a hand-computed list of three),
Bradley-Terry with margins and preference-strength treatments, SPO win rates, INPO, EGPO."""

import math

import pytest
import torch

from policyopt.losses.preference import (
    binary_feedback_loss,
    bradley_terry_loss,
    dpo_loss,
    extragradient_step,
    implicit_rewards,
    info_nce_loss,
    inpo_loss,
    ipo_loss,
    lambda_weights,
    lipo_loss,
    online_ipo_loss,
    preference_strength,
    robust_dpo_loss,
    rrhf_loss,
    slic_hf_loss,
    strength_treatment,
    win_rate_rewards,
)


def softplus(x):
    return math.log1p(math.exp(x))


# pi_w = -1, pi_l = -2, ref_w = ref_l = -1.5: h = (-1 + 1.5) - (-2 + 1.5) = 1.0
PC, PR, RC, RR = (torch.tensor([v]) for v in (-1.0, -2.0, -1.5, -1.5))


def test_dpo_is_the_paper_formula():
    beta = 0.1
    expected = -math.log(1 / (1 + math.exp(-beta * ((-1 + 1.5) - (-2 + 1.5)))))   # -log sigmoid(0.1)
    assert float(dpo_loss(PC, PR, RC, RR, beta)) == pytest.approx(expected, rel=1e-6)
    assert float(dpo_loss(PC, PR, RC, RR, beta)) == pytest.approx(softplus(-0.1), rel=1e-6)
    assert float(implicit_rewards(PC, RC, beta)) == pytest.approx(0.05)
    # gradient wrt pi_w: -beta * sigmoid(-beta h) = -0.1 * sigmoid(-0.1)
    pc = PC.clone().requires_grad_()
    dpo_loss(pc, PR, RC, RR, beta).sum().backward()
    assert float(pc.grad) == pytest.approx(-0.1 / (1 + math.exp(0.1)), rel=1e-6)


def test_cdpo_and_robust_dpo():
    e = 0.1
    cdpo = (1 - e) * softplus(-0.1) + e * softplus(0.1)
    assert float(dpo_loss(PC, PR, RC, RR, 0.1, label_smoothing=e)) == pytest.approx(cdpo, rel=1e-6)
    rdpo = ((1 - e) * softplus(-0.1) - e * softplus(0.1)) / (1 - 2 * e)
    assert float(robust_dpo_loss(PC, PR, RC, RR, 0.1, flip_rate=e)) == pytest.approx(rdpo, rel=1e-6)
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(PC, PR, RC, RR, 0.1, label_smoothing=0.5)


def test_ipo_squared_loss_target_is_one_over_two_tau():
    tau = 0.5                                   # target 1 / (2 * 0.5) = 1 = h here
    pc = PC.clone().requires_grad_()
    loss = ipo_loss(pc, PR, RC, RR, tau)
    assert float(loss.detach()) == 0.0
    loss.sum().backward()
    assert float(pc.grad) == 0.0                # minimum exactly at h = 1 / (2 tau)
    assert float(ipo_loss(PC, PR, RC, RR, tau=0.25)) == pytest.approx((1.0 - 2.0) ** 2)
    # online IPO: p = 1 is IPO; p = 1/2 pulls h to 0; p = 0 to -1/(2 tau)
    assert float(online_ipo_loss(PC, PR, RC, RR, torch.tensor([1.0]), 0.25)) == pytest.approx(1.0)
    assert float(online_ipo_loss(PC, PR, RC, RR, torch.tensor([0.5]), 0.25)) == pytest.approx(1.0)
    assert float(online_ipo_loss(PC, PR, RC, RR, torch.tensor([0.0]), 0.25)) == pytest.approx(9.0)


def test_slic_hf_hinge():
    pc, pr = torch.tensor([-1.0, -1.0]), torch.tensor([-1.3, -3.0])
    # margins 0.3 and 2.0 against delta 1: hinge 0.7 and 0
    assert slic_hf_loss(pc, pr, delta=1.0).tolist() == pytest.approx([0.7, 0.0])
    sft = torch.tensor([-2.0, -4.0])
    assert slic_hf_loss(pc, pr, 1.0, sft_logps=sft, sft_weight=0.5).tolist() == pytest.approx([1.7, 2.0])
    # reference-anchored: h = 0.3 - (ref_c - ref_r) = 0.3 - (-0.5) = 0.8 -> 0.2
    anchored = slic_hf_loss(pc[:1], pr[:1], 1.0, torch.tensor([-2.0]), torch.tensor([-1.5]))
    assert float(anchored) == pytest.approx(0.2)


def test_rrhf_hand_values():
    logps = torch.tensor([[-2.0, -6.0, -3.0, float("nan")]])
    lengths = torch.tensor([[2, 3, 1, 1]])
    rewards = torch.tensor([[3.0, 1.0, 2.0, 99.0]])
    mask = torch.tensor([[True, True, True, False]])
    # p = (-1, -2, -3). pairs r_i < r_j: (1 < 0): max(0, -2 + 1) = 0; (1 < 2): max(0, -2 + 3) = 1;
    # (2 < 0): max(0, -3 + 1) = 0 -> rank loss 1. best = item 0: -log pi = 2 -> total 1 + 2 = 3
    assert float(rrhf_loss(logps, lengths, rewards, mask)) == pytest.approx(3.0)
    assert float(rrhf_loss(logps, lengths, rewards, mask, sft_weight=0.0)) == pytest.approx(1.0)


def test_lipo_list_of_two_equals_pairwise_dpo():
    beta = 0.1
    pol = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -1.5]])
    labels = torch.tensor([[1.0, 0.0]])
    dpo = float(dpo_loss(PC, PR, RC, RR, beta))
    for kind in ("pair_logistic", "list_mle", "softmax"):
        assert float(lipo_loss(pol, ref, labels, beta=beta, kind=kind)) == pytest.approx(dpo, rel=1e-6), kind
    # lambda: Delta = |G_w - G_l| * |1/log2(2) - 1/log2(3)| = 1 * (1 - 0.63093)
    delta = 1.0 - 1.0 / math.log2(3.0)
    assert float(lipo_loss(pol, ref, labels, beta=beta)) == pytest.approx(delta * dpo, rel=1e-6)
    # the order of the list does not matter
    swapped = lipo_loss(pol.flip(-1), ref.flip(-1), labels.flip(-1), beta=beta, kind="list_mle")
    assert float(swapped) == pytest.approx(dpo, rel=1e-6)


def test_lipo_lambda_and_list_mle_on_a_list_of_three_with_padding():
    s = [0.0, 1.0, -1.0]                           # beta = 1, ref = 0
    pol = torch.tensor([s + [float("nan")]])
    ref = torch.zeros(1, 4)
    labels = torch.tensor([[2.0, 1.0, 0.0, 5.0]])
    mask = torch.tensor([[True, True, True, False]])
    # gains 2^psi - 1 = (3, 1, 0); ranks by score: item1 -> 1, item0 -> 2, item2 -> 3
    inv_d = [1 / math.log2(3), 1 / math.log2(2), 1 / math.log2(4)]
    d01, d02, d12 = 2 * abs(inv_d[0] - inv_d[1]), 3 * abs(inv_d[0] - inv_d[2]), 1 * abs(inv_d[1] - inv_d[2])
    expected = (d01 * softplus(-(s[0] - s[1])) + d02 * softplus(-(s[0] - s[2]))
                + d12 * softplus(-(s[1] - s[2])))
    assert float(lipo_loss(pol, ref, labels, mask, beta=1.0)) == pytest.approx(expected, rel=1e-6)
    w = lambda_weights(pol[:, :3], labels[:, :3])
    assert w[0, 0, 1] == pytest.approx(d01) and w[0, 1, 2] == pytest.approx(d12)
    # Plackett-Luce in label order (0, 1, 2): -[(0 - lse(0, 1, -1)) + (1 - lse(1, -1)) + 0]
    lse3 = math.log(math.exp(0) + math.exp(1) + math.exp(-1))
    lse2 = math.log(math.exp(1) + math.exp(-1))
    mle = lipo_loss(pol, ref, labels, mask, beta=1.0, kind="list_mle")
    assert float(mle) == pytest.approx(-((0 - lse3) + (1 - lse2)), rel=1e-6)
    pol_g = pol.clone().requires_grad_()
    lipo_loss(pol_g, ref, labels, mask, beta=1.0).sum().backward()
    assert torch.isfinite(pol_g.grad).all() and pol_g.grad[0, 3] == 0.0   # padding: no NaN, no grad


def test_bradley_terry_margin_smoothing_and_flip():
    rc, rr = torch.tensor([2.0]), torch.tensor([1.5])
    assert float(bradley_terry_loss(rc, rr)) == pytest.approx(softplus(-0.5), rel=1e-6)
    assert float(bradley_terry_loss(rc, rr, margin=0.2)) == pytest.approx(softplus(-0.3), rel=1e-6)
    smooth = 0.9 * softplus(-0.5) + 0.1 * softplus(0.5)
    assert float(bradley_terry_loss(rc, rr, label_smoothing=0.1)) == pytest.approx(smooth, rel=1e-6)
    flipped = bradley_terry_loss(rc, rr, flip=torch.tensor([True]))
    assert float(flipped) == pytest.approx(softplus(0.5), rel=1e-6)


def test_preference_strength_and_treatments():
    ens_c = torch.tensor([[1.0, 2.0, 0.1], [3.0, 2.0, 0.0]])
    ens_r = torch.tensor([[0.0, 3.0, 0.0], [1.0, 2.0, 0.0]])
    mean, std = preference_strength(ens_c, ens_r)
    # differences per model: (1, -1, 0.1) and (2, 0, 0) -> mean (1.5, -0.5, 0.05)
    assert mean.tolist() == pytest.approx([1.5, -0.5, 0.05])
    assert std.tolist() == pytest.approx([math.sqrt(0.5), math.sqrt(0.5), math.sqrt(0.005)], rel=1e-5)
    t = strength_treatment(mean, flip_below=0.0, soften_below=0.1, smoothing=0.1, margin_scale=1.0)
    assert t.flip.tolist() == [False, True, False]
    assert t.label_smoothing.tolist() == pytest.approx([0.0, 0.0, 0.1])
    assert t.margin.tolist() == pytest.approx([1.5, 0.5, 0.0])
    loss = bradley_terry_loss(torch.zeros(3), torch.zeros(3), t.margin, t.label_smoothing, t.flip)
    assert loss.tolist() == pytest.approx([softplus(1.5), softplus(0.5), math.log(2.0)], rel=1e-6)


def test_contrastive_and_binary_feedback():
    a = torch.eye(2)
    # cosine logits I / T (T = 1): -log(e / (e + 1)) per row
    assert float(info_nce_loss(a, a, temperature=1.0)) == pytest.approx(softplus(-1.0), rel=1e-6)
    bce = binary_feedback_loss(torch.tensor([0.0, 2.0]), torch.tensor([1, 0]))
    assert bce.tolist() == pytest.approx([math.log(2.0), softplus(2.0)], rel=1e-6)
    weighted = binary_feedback_loss(torch.tensor([0.0]), torch.tensor([1.0]), pos_weight=3.0)
    assert float(weighted) == pytest.approx(3 * math.log(2.0), rel=1e-6)


def test_spo_win_rates_including_intransitive_preferences():
    p = torch.tensor([[[0.5, 0.8, 0.6], [0.2, 0.5, 0.3], [0.4, 0.7, 0.5]]])
    # r0 = (0.8 + 0.6) / 2, r1 = (0.2 + 0.3) / 2, r2 = (0.4 + 0.7) / 2
    assert win_rate_rewards(p).flatten().tolist() == pytest.approx([0.7, 0.25, 0.55])
    masked = win_rate_rewards(p, torch.tensor([[True, True, False]]))
    assert masked.flatten().tolist() == pytest.approx([0.8, 0.2, 0.0])
    rps = torch.tensor([[[0.5, 1.0, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, 0.5]]])   # rock-paper-scissors
    assert win_rate_rewards(rps).flatten().tolist() == pytest.approx([0.5, 0.5, 0.5])


def test_inpo_hand_value_and_ipo_special_case():
    prev_c, prev_r = torch.tensor([-1.2]), torch.tensor([-1.8])
    # eta = 2, tau = 0.5: tau/eta = 0.25; h = 1 - 0.25 * 0 - 0.75 * (-1.2 + 1.8) = 0.55; target 1/4
    assert float(inpo_loss(PC, PR, RC, RR, prev_c, prev_r, eta=2.0, tau=0.5)) == pytest.approx(0.09)
    same = inpo_loss(PC, PR, RC, RR, prev_c, prev_r, eta=0.5, tau=0.5)   # tau = eta: IPO, prev unused
    assert float(same) == pytest.approx(float(ipo_loss(PC, PR, RC, RR, tau=0.5)))
    with pytest.raises(ValueError, match="tau"):
        inpo_loss(PC, PR, RC, RR, prev_c, prev_r, eta=0.5, tau=1.0)


def test_extragradient_converges_on_a_bilinear_game_where_gradient_steps_diverge():
    # min_x max_y x*y: the descent field is (dL/dx, -dL/dy) = (y, -x)
    def field(z):
        x, y = z
        return [y, -x]

    z_gd = [torch.tensor(1.0), torch.tensor(1.0)]
    z_eg = [torch.tensor(1.0), torch.tensor(1.0)]
    for _ in range(100):
        g = field(z_gd)
        z_gd = [p - 0.1 * d for p, d in zip(z_gd, g)]
        z_eg = extragradient_step(z_eg, field, lr=0.1)
    norm = lambda z: math.hypot(float(z[0]), float(z[1]))   # noqa: E731
    # gradient steps: |z| grows by sqrt(1 + 0.01) per step; extragradient: shrinks by sqrt(1 - 0.0099)
    assert norm(z_gd) == pytest.approx(math.sqrt(2) * 1.01 ** 50, rel=1e-4)
    assert norm(z_eg) == pytest.approx(math.sqrt(2) * (1 - 0.01 + 0.0001) ** 50, rel=1e-4)
    assert norm(z_eg) < 1.0 < norm(z_gd)


def test_lipo_is_invariant_to_list_order_and_padding_position():
    g = torch.Generator().manual_seed(2)
    pol, ref = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    labels = torch.randint(0, 4, (5, 4), generator=g).float()
    perm = torch.randperm(4, generator=g)
    for kind in ("lambda", "pair_logistic", "list_mle", "softmax"):
        a = lipo_loss(pol, ref, labels, kind=kind)
        b = lipo_loss(pol[:, perm], ref[:, perm], labels[:, perm], kind=kind)
        if kind != "list_mle":          # list_mle breaks label ties by position, like any PL sort
            assert torch.allclose(a, b, atol=1e-6), kind
        pad_pol = torch.cat([pol, torch.full((5, 1), float("nan"))], 1)
        pad_lab = torch.cat([labels, torch.full((5, 1), 9.0)], 1)
        pad_mask = torch.cat([torch.ones(5, 4, dtype=torch.bool), torch.zeros(5, 1, dtype=torch.bool)], 1)
        padded = lipo_loss(pad_pol, torch.cat([ref, ref[:, :1]], 1), pad_lab, pad_mask, kind=kind)
        assert torch.allclose(a, padded, atol=1e-6), kind
