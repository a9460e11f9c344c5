r"""Advantage estimators for language-model RL, where a prompt gets several sampled completions.

Layout: ``rewards [P, G]`` = ``P`` prompts x ``G`` completions each, or flat ``rewards [B]`` with a
``group_index [B]`` (long, any ids; groups may differ in size). Every function takes an optional
``mask`` (bool, same shape): ``False`` marks an *unscorable* completion (the reward function failed,
see ``policyopt.lm.reward``) or a padding slot. Masked entries may hold NaN; they never enter a
group's mean/std and always get advantage exactly 0.

Three failure modes of peer libraries are handled here on purpose (see docs/lm_losses.md):

- **Ties.** A group whose rewards all tie (within ``tie_atol``) carries no learning signal; its
  advantages are exactly 0 (not float residue amplified by ``1/std``), and :func:`group_statistics`
  reports the tied fraction (trl#3857, #3452).
- **Std floor.** ``(r - mean) / std`` is divided by ``max(std, std_floor)``; without a floor a group
  with std ~1e-9 (float residue, or a leave-one-out std over identical rewards) turns noise into
  +-1 advantages or blows a real difference up by ~1e9 (NeMo-RL PR#4161).
- **Dynamic sampling.** :func:`informative_groups` selects the groups with non-tied rewards, so an
  algorithm can drop and refill the others (DAPO, Yu et al., 2025).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

DEFAULT_STD_FLOOR = 1e-3
"""Absolute floor on a group's reward std. Rewards on a scale far below 1e-3 should lower it."""
DEFAULT_TIE_ATOL = 1e-6
"""Groups whose scorable rewards span at most this much count as tied."""


# ----------------------------------------------------------------------------------- layout helpers


def groups_from_flat(values: Tensor, group_index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pack flat ``values [B]`` into padded groups.

    Returns ``(padded [P, Gmax], present [P, Gmax] bool, slot [B] long)`` where ``P`` is the number
    of distinct ids in ``group_index`` (sorted ascending), ``present`` marks real entries, and
    ``padded.flatten()[slot]`` gives back ``values``. Vectorised (one stable sort, no Python loop).
    """
    if values.dim() != 1 or group_index.shape != values.shape:
        raise ValueError(f"groups_from_flat: expected values [B] and group_index [B], got "
                         f"{tuple(values.shape)} and {tuple(group_index.shape)}")
    _, inverse, counts = torch.unique(group_index, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    sorted_groups = inverse[order]
    pos_sorted = torch.arange(values.numel(), device=values.device) - starts[sorted_groups]
    position = torch.empty_like(pos_sorted)
    position[order] = pos_sorted
    width = int(counts.max()) if counts.numel() else 0
    slot = inverse * width + position
    padded = values.new_zeros((counts.numel(), width))
    padded.view(-1)[slot] = values
    present = torch.zeros((counts.numel(), width), dtype=torch.bool, device=values.device)
    present.view(-1)[slot] = True
    return padded, present, slot


def _as_groups(
    rewards: Tensor, mask: Tensor | None, group_index: Tensor | None
) -> tuple[Tensor, Tensor, Callable[[Tensor], Tensor]]:
    """Normalise inputs to ``(rewards [P, G] with zeros at masked slots, mask [P, G] bool, unpack)``."""
    if not rewards.is_floating_point():
        rewards = rewards.float()
    if mask is not None and mask.shape != rewards.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} != rewards shape {tuple(rewards.shape)}")
    if rewards.dim() == 1:
        if group_index is None:
            raise ValueError("flat rewards [B] need a group_index [B]; or pass rewards as [num_prompts, G]")
        padded, present, slot = groups_from_flat(rewards, group_index)
        if mask is not None:
            m = torch.zeros_like(present)
            m.view(-1)[slot] = mask.bool()
            present = present & m
        rewards2d, mask2d = padded, present

        def unpack(x: Tensor) -> Tensor:
            return x.reshape(-1)[slot]
    elif rewards.dim() == 2:
        if group_index is not None:
            raise ValueError("group_index is only for flat rewards [B]; rewards [P, G] are already grouped")
        rewards2d = rewards
        mask2d = torch.ones_like(rewards, dtype=torch.bool) if mask is None else mask.bool()

        def unpack(x: Tensor) -> Tensor:
            return x
    else:
        raise ValueError(f"rewards must be [num_prompts, G] or flat [B], got shape {tuple(rewards.shape)}")
    bad = mask2d & ~torch.isfinite(rewards2d)
    if bool(bad.any()):
        raise ValueError("a scorable reward is NaN/inf: mark it unscorable with mask=False instead")
    return torch.where(mask2d, rewards2d, torch.zeros_like(rewards2d)), mask2d, unpack


def _moments(r: Tensor, m: Tensor, unbiased: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Per-group ``(count [P], mean [P], std [P])`` over the scorable entries (std 0 when count < 2)."""
    mf = m.to(r.dtype)
    n = mf.sum(-1)
    mean = (r * mf).sum(-1) / n.clamp_min(1.0)
    sq = (((r - mean[:, None]) * mf) ** 2).sum(-1)
    dof = (n - 1.0) if unbiased else n
    std = torch.where(n >= 2, (sq / dof.clamp_min(1.0)).sqrt(), torch.zeros_like(n))
    return n, mean, std


def _ranges(r: Tensor, m: Tensor) -> Tensor:
    """Per-group max - min over scorable entries (0 for groups with no scorable entry)."""
    hi = torch.where(m, r, torch.full_like(r, -torch.inf)).amax(-1)
    lo = torch.where(m, r, torch.full_like(r, torch.inf)).amin(-1)
    return torch.where(m.any(-1), hi - lo, torch.zeros_like(hi))


# ---------------------------------------------------------------------------------- tie statistics


def tied_groups(
    rewards: Tensor, mask: Tensor | None = None, group_index: Tensor | None = None,
    tie_atol: float = DEFAULT_TIE_ATOL,
) -> Tensor:
    """``[P]`` bool: groups with >= 1 scorable completion whose scorable rewards span <= ``tie_atol``
    (a group with a single scorable completion is tied: it has nothing to compare against)."""
    r, m, _ = _as_groups(rewards, mask, group_index)
    return m.any(-1) & (_ranges(r, m) <= tie_atol)


def informative_groups(
    rewards: Tensor, mask: Tensor | None = None, group_index: Tensor | None = None,
    tie_atol: float = DEFAULT_TIE_ATOL,
) -> Tensor:
    """Dynamic sampling (DAPO, Yu et al., 2025, "DAPO: An Open-Source LLM RL System at Scale"):
    ``[P]`` bool, True for groups with >= 2 scorable completions whose rewards do not all tie.
    Keep those groups (``rewards[keep]``) and sample more prompts to refill the batch."""
    r, m, _ = _as_groups(rewards, mask, group_index)
    return (m.sum(-1) >= 2) & (_ranges(r, m) > tie_atol)


def group_statistics(
    rewards: Tensor, mask: Tensor | None = None, group_index: Tensor | None = None,
    tie_atol: float = DEFAULT_TIE_ATOL,
) -> dict[str, Tensor]:
    """Scalar diagnostics for logging (0-d tensors):

    - ``tied_fraction``: tied groups / groups with >= 1 scorable completion;
    - ``informative_fraction``: groups kept by :func:`informative_groups` / all groups;
    - ``unscorable_fraction``: masked-out completions / all completions;
    - ``mean_group_std``: mean (unbiased) reward std over groups with >= 2 scorable completions;
    - ``reward_mean``, ``reward_std``: over all scorable completions.
    """
    r, m, _ = _as_groups(rewards, mask, group_index)
    n, _, std = _moments(r, m, unbiased=True)
    rng = _ranges(r, m)
    has_any, has_two = n >= 1, n >= 2
    tied = has_any & (rng <= tie_atol)
    flat = r[m]
    zero = r.new_zeros(())
    return {
        "tied_fraction": tied.sum() / has_any.sum().clamp_min(1),
        "informative_fraction": (has_two & (rng > tie_atol)).to(r.dtype).mean() if n.numel() else zero,
        "unscorable_fraction": 1.0 - m.to(r.dtype).mean() if m.numel() else zero,
        "mean_group_std": (std * has_two).sum() / has_two.sum().clamp_min(1),
        "reward_mean": flat.mean() if flat.numel() else zero,
        "reward_std": flat.std() if flat.numel() >= 2 else zero,
    }


# ------------------------------------------------------------------------------------- advantages


def group_relative_advantages(
    rewards: Tensor,
    mask: Tensor | None = None,
    group_index: Tensor | None = None,
    scale_by_std: bool = True,
    std_floor: float = DEFAULT_STD_FLOOR,
    unbiased: bool = True,
    tie_atol: float = DEFAULT_TIE_ATOL,
    std_eps: float = 0.0,
) -> Tensor:
    r"""GRPO's group-relative advantage (Shao et al., 2024, "DeepSeekMath"):

    .. math:: A_i = \frac{r_i - \mathrm{mean}(r_{group})}{\max(\mathrm{std}(r_{group}),\ s_{floor})}

    ``scale_by_std=False`` gives Dr.GRPO's :math:`A_i = r_i - \mathrm{mean}` (Liu et al., 2025,
    "Understanding R1-Zero-Like Training: A Critical Perspective"), which removes the
    difficulty bias of the std division. Statistics use scorable entries only; masked entries and
    tied groups get exactly 0. ``unbiased=True`` uses the ``n - 1`` std (as TRL does); ``std_eps``
    is added to the divisor (TRL divides by ``std + 1e-4``: ``std_floor=0, std_eps=1e-4, tie_atol=0``
    reproduces it, residue blow-ups included).

    Returns advantages with the shape of ``rewards`` (``[P, G]`` or ``[B]``).
    """
    if std_floor < 0 or std_eps < 0:
        raise ValueError(f"std_floor and std_eps must be >= 0, got {std_floor}, {std_eps}")
    r, m, unpack = _as_groups(rewards, mask, group_index)
    n, mean, std = _moments(r, m, unbiased)
    adv = r - mean[:, None]
    if scale_by_std:
        adv = adv / (std.clamp_min(std_floor) + std_eps).clamp_min(torch.finfo(r.dtype).tiny)[:, None]
    keep = m & ((n >= 2) & (_ranges(r, m) > tie_atol))[:, None]
    return unpack(torch.where(keep, adv, torch.zeros_like(adv)))


def rloo_advantages(
    rewards: Tensor,
    mask: Tensor | None = None,
    group_index: Tensor | None = None,
    scale_by_std: bool = False,
    std_floor: float = DEFAULT_STD_FLOOR,
    tie_atol: float = DEFAULT_TIE_ATOL,
) -> Tensor:
    r"""REINFORCE leave-one-out (Kool et al., 2019, "Buy 4 REINFORCE Samples, Get a Baseline for
    Free!"; Ahmadian et al., 2024, "Back to Basics: Revisiting REINFORCE Style Optimization"):

    .. math:: A_i = r_i - \frac{1}{n-1}\sum_{j \ne i} r_j = \frac{n}{n-1}\,(r_i - \bar r)

    over the ``n`` scorable completions of the group (groups with ``n < 2`` get 0). With
    ``scale_by_std`` the result is divided by ``max(std_group, std_floor)`` (the group std, not a
    leave-one-out std, which is 0 whenever the other ``n - 1`` rewards tie).
    """
    r, m, unpack = _as_groups(rewards, mask, group_index)
    n, mean, std = _moments(r, m, unbiased=True)
    factor = n / (n - 1.0).clamp_min(1.0)
    adv = factor[:, None] * (r - mean[:, None])
    if scale_by_std:
        adv = adv / std.clamp_min(std_floor).clamp_min(torch.finfo(r.dtype).tiny)[:, None]
    keep = m & ((n >= 2) & (_ranges(r, m) > tie_atol))[:, None]
    return unpack(torch.where(keep, adv, torch.zeros_like(adv)))


def remax_advantages(
    rewards: Tensor,
    greedy_rewards: Tensor,
    mask: Tensor | None = None,
    greedy_mask: Tensor | None = None,
    group_index: Tensor | None = None,
) -> Tensor:
    r"""ReMax (Li et al., 2024, "ReMax: A Simple, Effective, and Efficient RL Method for Aligning
    LLMs"): the baseline of a prompt is the reward of its greedy completion,
    :math:`A_i = r(x, y_i) - r(x, \bar y^{greedy})`.

    ``greedy_rewards [P]`` (one per group; with flat rewards, ordered by ascending group id).
    ``greedy_mask [P]`` False marks an unscorable greedy completion: that group gets advantage 0.
    """
    r, m, unpack = _as_groups(rewards, mask, group_index)
    if greedy_rewards.shape != (r.shape[0],):
        raise ValueError(f"greedy_rewards must be [num_groups={r.shape[0]}], "
                         f"got {tuple(greedy_rewards.shape)}")
    gm = torch.ones_like(greedy_rewards, dtype=torch.bool) if greedy_mask is None else greedy_mask.bool()
    if bool((gm & ~torch.isfinite(greedy_rewards)).any()):
        raise ValueError("a scorable greedy reward is NaN/inf: mark it with greedy_mask=False instead")
    base = torch.where(gm, greedy_rewards.to(r.dtype), torch.zeros_like(r[:, 0]))
    keep = m & gm[:, None]
    return unpack(torch.where(keep, r - base[:, None], torch.zeros_like(r)))


def running_mean_advantages(
    rewards: Tensor,
    ema: Tensor,
    steps: Tensor,
    mask: Tensor | None = None,
    decay: float = 0.9,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""REINFORCE with a running-mean baseline (Williams, 1992): :math:`A_i = r_i - b`, where ``b``
    is a bias-corrected exponential moving average of past batch-mean rewards (as in Adam:
    :math:`b = \mathrm{ema} / (1 - \mathrm{decay}^{steps})`; ``b = 0`` before the first update).
    The baseline is the one *before* this batch, so it does not depend on the sample it scores.

    Args:
        rewards: any shape; ``mask`` marks scorable entries (masked -> advantage 0, excluded).
        ema, steps: 0-d state tensors (start at ``0.0`` and ``0``); checkpoint them with the algorithm.
    Returns:
        ``(advantages, new_ema, new_steps)``; a batch with no scorable entry leaves the state as is.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay}")
    m = torch.ones_like(rewards, dtype=torch.bool) if mask is None else mask.bool()
    r = torch.where(m, rewards.float(), torch.zeros_like(rewards, dtype=torch.float))
    k = steps.to(r.dtype)
    baseline = torch.where(k > 0, ema / (1.0 - decay**k).clamp_min(1e-12), torch.zeros_like(ema))
    adv = torch.where(m, r - baseline, torch.zeros_like(r))
    count = m.sum()
    batch_mean = r.sum() / count.clamp_min(1)
    has = count > 0
    new_ema = torch.where(has, decay * ema + (1.0 - decay) * batch_mean, ema)
    new_steps = torch.where(has, steps + 1, steps)
    return adv, new_ema, new_steps
