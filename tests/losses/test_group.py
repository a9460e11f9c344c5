"""Group advantage estimators against hand-computed values (ties, size-2 groups, unscorable
completions, the std floor, flat layout with a group index)."""

import math

import pytest
import torch

from policyopt.losses.group import (
    group_relative_advantages,
    group_statistics,
    groups_from_flat,
    informative_groups,
    remax_advantages,
    rloo_advantages,
    running_mean_advantages,
    tied_groups,
)

nan = math.nan


def test_grpo_hand_values_and_tied_group_is_exactly_zero():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5]])
    adv = group_relative_advantages(r)
    # group 0: mean 0.5, unbiased std = sqrt((4 * 0.25) / 3) = 0.57735 -> +-0.5 / 0.57735 = +-0.86603
    s = math.sqrt(1.0 / 3.0)
    assert adv[0].tolist() == pytest.approx([0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s], rel=1e-6)
    assert adv[1].tolist() == [0.0, 0.0, 0.0, 0.0]   # tied group: no signal, exactly 0


def test_group_of_size_two():
    r = torch.tensor([[1.0, 0.0]])
    # mean 0.5; unbiased std = sqrt(2 * 0.25 / 1) = 0.70711 -> +-0.70711; population std 0.5 -> +-1
    assert group_relative_advantages(r).flatten().tolist() == pytest.approx([0.70711, -0.70711], rel=1e-4)
    assert group_relative_advantages(r, unbiased=False).flatten().tolist() == pytest.approx([1.0, -1.0])
    # Dr.GRPO: no std division -> r - mean
    assert group_relative_advantages(r, scale_by_std=False).flatten().tolist() == pytest.approx([0.5, -0.5])


def test_unscorable_completions_get_zero_and_do_not_enter_the_statistics():
    r = torch.tensor([[1.0, nan, 0.0, 0.5]])
    m = torch.tensor([[True, False, True, True]])
    # scorable (1, 0, 0.5): mean 0.5, deviations (0.5, -0.5, 0), unbiased var = 0.5 / 2 -> std 0.5
    adv = group_relative_advantages(r, mask=m)
    assert adv.flatten().tolist() == pytest.approx([1.0, 0.0, -1.0, 0.0])
    assert not torch.isnan(adv).any()
    with pytest.raises(ValueError, match="NaN"):
        group_relative_advantages(r)   # NaN without a mask is a bug, not a reward


def test_std_floor_prevents_residue_blow_up():
    r = torch.tensor([[1e-9, 0.0, 0.0, 0.0]], dtype=torch.float64)
    # mean 2.5e-10, deviations (7.5e-10, -2.5e-10 x3); unbiased var = 7.5e-19 / 3 -> std 5e-10
    raw = group_relative_advantages(r, std_floor=0.0, tie_atol=0.0)
    assert raw.flatten().tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5], rel=1e-6)   # noise -> O(1)
    floored = group_relative_advantages(r, std_floor=1e-3, tie_atol=0.0)
    assert floored.flatten().tolist() == pytest.approx([7.5e-7, -2.5e-7, -2.5e-7, -2.5e-7], rel=1e-6)
    assert float(floored.abs().max()) < 1e-5
    assert group_relative_advantages(r).abs().max() == 0.0    # default tie tolerance: a tie
    # TRL's divisor std + 1e-4 (no floor, no tie check): 7.5e-10 / (5e-10 + 1e-4)
    trl_like = group_relative_advantages(r, std_floor=0.0, std_eps=1e-4, tie_atol=0.0)
    assert float(trl_like[0, 0]) == pytest.approx(7.5e-10 / (5e-10 + 1e-4), rel=1e-6)
    # A real O(1) reward difference over a ~1e-9 std (what a leave-one-out std over tied rewards
    # produces) would be ~1e9; the floor caps the divisor so |A| <= |r - mean| / 1e-3.
    one = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    rl = rloo_advantages(one, scale_by_std=True)
    assert float(rl.abs().max()) < 10.0


def test_flat_layout_with_group_index_matches_grouped():
    rewards = torch.tensor([1.0, 3.0, 0.0, 0.0, 3.0])
    gidx = torch.tensor([7, 2, 7, 2, 2])
    adv = group_relative_advantages(rewards, group_index=gidx)
    # group 7: (1, 0) -> +-0.70711; group 2: (3, 0, 3): mean 2, var (1 + 4 + 1) / 2 = 3, std 1.7321
    s3 = math.sqrt(3.0)
    assert adv.tolist() == pytest.approx([0.70711, 1 / s3, -0.70711, -2 / s3, 1 / s3], rel=1e-4)
    padded, present, slot = groups_from_flat(rewards, gidx)
    assert padded.tolist() == [[3.0, 0.0, 3.0], [1.0, 0.0, 0.0]]   # ids sorted: 2 then 7
    assert present.tolist() == [[True, True, True], [True, True, False]]
    assert torch.equal(padded.flatten()[slot], rewards)


def test_tie_statistics_and_dynamic_sampling():
    r = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [nan, nan, nan], [2.0, nan, nan]])
    m = ~torch.isnan(r)
    assert tied_groups(r, m).tolist() == [True, False, False, True]   # one scorable -> tied
    assert informative_groups(r, m).tolist() == [False, True, False, False]
    stats = group_statistics(r, m)
    assert float(stats["tied_fraction"]) == pytest.approx(2 / 3)      # 2 of 3 groups with a score
    assert float(stats["informative_fraction"]) == pytest.approx(1 / 4)
    assert float(stats["unscorable_fraction"]) == pytest.approx(5 / 12)
    # groups 0 and 1 have >= 2 scorable: std 0 and std(0, 1, 0) = sqrt((1/9 + 4/9 + 1/9) / 2) = 0.57735
    assert float(stats["mean_group_std"]) == pytest.approx(math.sqrt(1 / 3) / 2, rel=1e-5)
    assert float(stats["reward_mean"]) == pytest.approx((3 + 1 + 2) / 7)
    flat = torch.tensor([1.0, 1.0, 0.0, 1.0])
    assert informative_groups(flat, group_index=torch.tensor([0, 0, 1, 1])).tolist() == [False, True]


def test_rloo_hand_values():
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # A_i = r_i - mean of the others: 1 - 0, 0 - 1/3, ...
    assert rloo_advantages(r).flatten().tolist() == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3])
    # group std (unbiased) = sqrt((0.5625 + 3 * 0.0625) / 3) = 0.5 -> doubled
    scaled = rloo_advantages(r, scale_by_std=True)
    assert scaled.flatten().tolist() == pytest.approx([2.0, -2 / 3, -2 / 3, -2 / 3])
    masked = rloo_advantages(torch.tensor([[1.0, nan, 0.0]]), mask=torch.tensor([[True, False, True]]))
    assert masked.flatten().tolist() == pytest.approx([1.0, 0.0, -1.0])   # n = 2: 1 - 0, 0 - 1
    assert rloo_advantages(torch.tensor([[2.0, 2.0]])).flatten().tolist() == [0.0, 0.0]


def test_remax_baseline_is_the_greedy_reward():
    r = torch.tensor([[1.0, 0.0], [0.2, 0.4]])
    adv = remax_advantages(r, torch.tensor([0.5, nan]), greedy_mask=torch.tensor([True, False]))
    assert adv.flatten().tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0])   # unscorable greedy -> 0
    with pytest.raises(ValueError, match="greedy_rewards"):
        remax_advantages(r, torch.tensor([0.5]))


def test_running_mean_baseline():
    ema, steps = torch.tensor(0.0), torch.tensor(0)
    adv, ema, steps = running_mean_advantages(torch.tensor([1.0, 3.0]), ema, steps, decay=0.9)
    assert adv.tolist() == [1.0, 3.0]                        # no baseline before the first batch
    assert float(ema) == pytest.approx(0.1 * 2.0) and int(steps) == 1
    adv, ema, steps = running_mean_advantages(torch.tensor([0.0, 4.0, 99.0]), ema, steps, decay=0.9,
                                              mask=torch.tensor([True, True, False]))
    # bias-corrected baseline = 0.2 / (1 - 0.9) = 2
    assert adv.tolist() == pytest.approx([-2.0, 2.0, 0.0])
    assert float(ema) == pytest.approx(0.9 * 0.2 + 0.1 * 2.0) and int(steps) == 2


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="group_index"):
        group_relative_advantages(torch.zeros(4))
    with pytest.raises(ValueError, match="mask shape"):
        group_relative_advantages(torch.zeros(2, 2), mask=torch.ones(4, dtype=torch.bool))


def test_random_groups_properties_flat_equals_grouped_and_invariances():
    g = torch.Generator().manual_seed(3)
    r = torch.randint(0, 3, (64, 8), generator=g).double() / 2      # many ties and near-ties
    mask = torch.rand(64, 8, generator=g) > 0.2
    adv = group_relative_advantages(r, mask)
    # per group, advantages of the scorable entries sum to 0 and masked entries are exactly 0
    assert torch.allclose((adv * mask).sum(-1), torch.zeros(64, dtype=torch.float64), atol=1e-12)
    assert (adv[~mask] == 0).all()
    # affine invariance of the std-normalised form (while the std floor is inactive)
    assert torch.allclose(group_relative_advantages(3.0 * r + 7.0, mask), adv, atol=1e-9)
    # the flat layout (shuffled, arbitrary ids) gives the same numbers
    perm = torch.randperm(64 * 8, generator=g)
    ids = (torch.arange(64).repeat_interleave(8) * 10 + 5)[perm]
    flat = group_relative_advantages(r.flatten()[perm], mask.flatten()[perm], group_index=ids)
    assert torch.allclose(flat, adv.flatten()[perm])
    loo = rloo_advantages(r, mask)
    n = mask.sum(-1, keepdim=True).double()
    others_mean = ((r * mask).sum(-1, keepdim=True) - r) / (n - 1).clamp_min(1)
    informative = informative_groups(r, mask)[:, None] & mask
    assert torch.allclose(loo[informative], (r - others_mean)[informative])
