r"""Token-level policy losses for language models, as pure functions on ``[B, T]`` tensors.

Layout (as in ``policyopt.lm``): ``logp, old_logp, ref_logp: [B, T]`` per-token log-probabilities of
the sampled completion tokens (right-padded), ``mask: [B, T]`` bool, True = a completion token that
enters the loss. Advantages are ``[B]`` (one per completion) or ``[B, T]`` (per token, e.g. GAE).

One loss, :func:`lm_policy_loss`, covers the GRPO family through its options:

==================  =====================================================================
ratio_level         ``"token"`` (PPO/GRPO), ``"sequence"`` (GSPO), ``"sequence_token"`` (GSPO-token)
clip_low/clip_high  symmetric PPO clip, or DAPO's clip-higher (``clip_high > clip_low``)
aggregation         ``"sequence_mean"`` (GRPO), ``"token_mean"`` (DAPO), ``"fixed_length"`` (Dr.GRPO)
ref_logp, kl_coef   KL to the reference in the loss (k1/k2/k3, Schulman 2020)
==================  =====================================================================

KL folded into the reward instead: :func:`kl_penalized_rewards` (one scalar per completion) or
:func:`kl_token_rewards` (per-token, RLHF PPO). PPO with a critic: :func:`token_gae` here plus
``policyopt.losses.value.value_loss``, which works on ``[B, T]`` with a mask unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from policyopt.losses.advantages import gae
from policyopt.losses.kl import kl_estimate
from policyopt.losses.surrogate import clip_statistics, clipped_objective

AGGREGATIONS = ("sequence_mean", "token_mean", "fixed_length")
RATIO_LEVELS = ("token", "sequence", "sequence_token")


def _check_bt(name: str, x: Tensor, like: Tensor) -> None:
    if x.shape != like.shape:
        raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {tuple(like.shape)} (= logp [B, T])")


def aggregate_tokens(
    values: Tensor, mask: Tensor, mode: str = "sequence_mean", max_length: int | None = None
) -> Tensor:
    r"""Reduce per-token ``values [B, T]`` over ``mask`` to a scalar.

    - ``"sequence_mean"``: :math:`\frac1B \sum_i \frac{1}{|y_i|}\sum_t v_{i,t}` (GRPO, Shao et al., 2024);
      rows with no token are left out of the batch mean.
    - ``"token_mean"``: :math:`\sum_{i,t} v_{i,t} / \sum_i |y_i|` (DAPO, Yu et al., 2025): every token
      weighs the same, so long completions are not down-weighted.
    - ``"fixed_length"``: :math:`\sum_{i,t} v_{i,t} / (B \cdot L_{max})` (Dr.GRPO, Liu et al., 2025): a
      constant normaliser, free of the length bias of the other two; needs ``max_length``.
    """
    m = mask.to(values.dtype)
    if mode == "token_mean":
        return (values * m).sum() / m.sum().clamp_min(1.0)
    if mode == "sequence_mean":
        n = m.sum(-1)
        per_seq = (values * m).sum(-1) / n.clamp_min(1.0)
        has = (n > 0).to(values.dtype)
        return (per_seq * has).sum() / has.sum().clamp_min(1.0)
    if mode == "fixed_length":
        if max_length is None or max_length <= 0:
            raise ValueError("aggregation 'fixed_length' (Dr.GRPO) needs max_length > 0 (the token limit)")
        return (values * m).sum() / (values.shape[0] * max_length)
    raise ValueError(f"unknown aggregation {mode!r}: expected one of {AGGREGATIONS}")


def sequence_log_ratio(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Tensor:
    r"""GSPO's length-normalised sequence log-ratio (Zheng et al., 2025, "Group Sequence Policy
    Optimization"): :math:`\log s_i = \frac{1}{|y_i|}\sum_t (\log\pi_\theta - \log\pi_{old})(y_{i,t})`,
    so :math:`s_i` is the geometric mean of the token ratios over the mask. ``[B, T] -> [B]``."""
    m = mask.to(logp.dtype)
    return ((logp - old_logp) * m).sum(-1) / m.sum(-1).clamp_min(1.0)


def _ratios(logp: Tensor, old_logp: Tensor, mask: Tensor, level: str) -> Tensor:
    """Importance ratios broadcast to ``[B, T]`` for the given level (see module docstring)."""
    if level == "token":
        return (logp - old_logp).exp()
    seq = sequence_log_ratio(logp, old_logp, mask)
    if level == "sequence":
        return seq.exp()[:, None].expand_as(logp)
    if level == "sequence_token":
        # GSPO-token: value s_i at every token, gradient of log pi at that token only.
        return seq.detach().exp()[:, None] * (logp - logp.detach()).exp()
    raise ValueError(f"unknown ratio_level {level!r}: expected one of {RATIO_LEVELS}")


def lm_policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 0.2,
    clip_high: float | None = None,
    ratio_level: str = "token",
    aggregation: str = "sequence_mean",
    max_length: int | None = None,
    dual_clip: float | None = None,
    ref_logp: Tensor | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Clipped policy-gradient loss of the GRPO family on ``[B, T]`` tokens:

    .. math::
        L = \mathrm{agg}_{i,t}\Big[-\min\big(\rho_{i,t} A_{i,t},\
            \mathrm{clip}(\rho_{i,t}, 1-\epsilon_l, 1+\epsilon_h) A_{i,t}\big)\Big]
            + \beta\, \mathrm{agg}_{i,t}\big[\hat{KL}(\pi_\theta \| \pi_{ref})_{i,t}\big]

    (PPO, Schulman et al., 2017; GRPO, Shao et al., 2024). ``ratio_level`` picks :math:`\rho`: the
    token ratio, GSPO's sequence ratio :math:`s_i` (:func:`sequence_log_ratio`; with
    ``aggregation="sequence_mean"`` this is exactly GSPO's objective), or GSPO-token.
    ``clip_high`` > ``clip_low`` is DAPO's clip-higher; ``dual_clip`` = c > 1 bounds the loss of
    negative advantages by ``c * |A|`` (Ye et al., 2020, "Mastering Complex Control in MOBA Games").
    Strictly on-policy: pass ``old_logp = logp.detach()`` (ratio 1, gradient = REINFORCE).

    Args:
        logp: ``[B, T]`` current log-probs (with grad). old_logp, ref_logp: ``[B, T]`` (no grad).
        advantages: ``[B]`` or ``[B, T]`` (``"sequence"`` levels need ``[B]``).
        mask: ``[B, T]`` bool; masked tokens contribute neither loss nor gradient.
    Returns:
        ``(loss, metrics)``; metrics (detached 0-d token means): ``clip_fraction`` (share of ratios
        outside the clip range, as classic PPO's), ``ratio_mean``, ``approx_kl_old`` (k3 estimate of
        KL(pi_old || pi), :func:`~policyopt.losses.surrogate.clip_statistics`), and ``kl_ref`` when
        ``ref_logp`` is given. The clipping itself is :func:`~policyopt.losses.surrogate.clipped_objective`.
    """
    _check_bt("old_logp", old_logp, logp)
    _check_bt("mask", mask, logp)
    adv = _token_advantages(advantages, logp, ratio_level)
    ratio = _ratios(logp, old_logp, mask, ratio_level)
    per_token, outside = clipped_objective(ratio, adv, clip_low, clip_high, dual_clip)
    loss = aggregate_tokens(per_token, mask, aggregation, max_length)
    metrics = {}
    if ref_logp is not None or kl_coef:
        kl_term, metrics["kl_ref"] = _kl_term(logp, ref_logp, mask, kl_estimator, aggregation, max_length)
        loss = loss + kl_coef * kl_term if kl_coef else loss
    clip, kl_old = clip_statistics(outside, logp, old_logp)
    metrics.update({name: aggregate_tokens(x, mask, "token_mean") for name, x in
                    (("clip_fraction", clip), ("ratio_mean", ratio.detach()), ("approx_kl_old", kl_old))})
    return loss, metrics


def _kl_term(
    logp: Tensor, ref_logp: Tensor | None, mask: Tensor, kind: str, aggregation: str, max_length: int | None
) -> tuple[Tensor, Tensor]:
    """``(aggregated KL estimate with grad, detached token-mean k3 KL for logging)``."""
    if ref_logp is None:
        raise ValueError("kl_coef > 0 needs ref_logp (the reference policy's per-token log-probs)")
    _check_bt("ref_logp", ref_logp, logp)
    kl = kl_estimate(logp, ref_logp, kind)
    # stats/kl_ref is always the k3 token mean (docs/metrics.md), whatever estimator the loss uses
    logged = aggregate_tokens(kl.detach() if kind == "k3" else kl_estimate(logp.detach(), ref_logp, "k3"), mask,
                              "token_mean")
    return aggregate_tokens(kl, mask, aggregation, max_length), logged


def _token_advantages(advantages: Tensor, logp: Tensor, ratio_level: str) -> Tensor:
    """Broadcast ``[B]`` or ``[B, T]`` advantages to ``logp``'s ``[B, T]``, checking shapes."""
    if advantages.dim() == 1:
        if advantages.shape[0] != logp.shape[0]:
            raise ValueError(f"advantages [B] has B={advantages.shape[0]}, logp has B={logp.shape[0]}")
        return advantages[:, None].expand_as(logp).to(logp.dtype)
    if ratio_level != "token":
        raise ValueError(f"ratio_level {ratio_level!r} needs one advantage per sequence [B], got [B, T]")
    _check_bt("advantages", advantages, logp)
    return advantages.to(logp.dtype)


# ------------------------------------------------------------------------------------------ KL


def kl_penalized_rewards(
    rewards: Tensor, logp: Tensor, ref_logp: Tensor, mask: Tensor, kl_coef: float, kl_estimator: str = "k1"
) -> Tensor:
    r"""KL folded into the reward, one scalar per completion:
    :math:`r_i - \beta \sum_t \hat{KL}_{i,t}` (Ziegler et al., 2019; Stiennon et al., 2020). Computed
    without gradient from the sampling policy's ``logp``. ``rewards [B]``, others ``[B, T]``."""
    _check_bt("ref_logp", ref_logp, logp)
    with torch.no_grad():
        kl = kl_estimate(logp, ref_logp, kl_estimator) * mask.to(logp.dtype)
        return rewards - kl_coef * kl.sum(-1)


def last_token_index(mask: Tensor) -> Tensor:
    """``[B]`` index of the last True of each row of ``mask [B, T]`` (-1 for an empty row)."""
    pos = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), pos, torch.full_like(pos, -1)).amax(-1)


def kl_token_rewards(
    rewards: Tensor, logp: Tensor, ref_logp: Tensor, mask: Tensor, kl_coef: float, kl_estimator: str = "k1"
) -> Tensor:
    r"""Per-token rewards of RLHF PPO (Ziegler et al., 2019; Ouyang et al., 2022):
    :math:`r_{i,t} = -\beta\,\hat{KL}_{i,t} + [t = \text{last}]\, r_i`, zero on masked tokens.
    ``rewards [B]`` -> ``[B, T]``; feed to :func:`token_gae`."""
    _check_bt("ref_logp", ref_logp, logp)
    with torch.no_grad():
        m = mask.to(logp.dtype)
        out = -kl_coef * kl_estimate(logp, ref_logp, kl_estimator) * m
        last = last_token_index(mask)
        rows = torch.nonzero(last >= 0).squeeze(-1)
        out[rows, last[rows]] += rewards[rows].to(out.dtype)
        return out


def dynamic_kl_coef(
    step: int, total_steps: int, beta_min: float, beta_max: float,
    warmup_fraction: float = 1.0, schedule: str = "linear",
) -> float:
    r"""GRPO-D's dynamic KL coefficient (Liu et al., 2025, "OThink-MR1"): a small KL weight early
    (explore away from the reference), growing to ``beta_max`` (exploit), in the spirit of an
    epsilon-greedy schedule. Over the first ``warmup_fraction * total_steps`` steps:

    .. math:: \beta(s) = \beta_{min} + (\beta_{max} - \beta_{min})\, g\big(\min(1, s / (w S))\big)

    with ``g(u) = u`` (``"linear"``) or ``(1 - cos(pi u)) / 2`` (``"cosine"``); then ``beta_max``.
    ``beta_min > beta_max`` gives a decaying schedule.
    """
    if total_steps <= 0 or not 0.0 < warmup_fraction <= 1.0:
        raise ValueError(f"need total_steps > 0 and 0 < warmup_fraction <= 1, "
                         f"got {total_steps}, {warmup_fraction}")
    u = min(1.0, max(0.0, step / (warmup_fraction * total_steps)))
    if schedule == "cosine":
        u = 0.5 * (1.0 - math.cos(math.pi * u))
    elif schedule != "linear":
        raise ValueError(f"unknown schedule {schedule!r}: expected 'linear' or 'cosine'")
    return beta_min + (beta_max - beta_min) * u


# ------------------------------------------------------------------------------------- critic


def token_gae(
    token_rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[Tensor, Tensor]:
    r"""Token-level GAE for PPO with a critic on completions (Schulman et al., 2016; as used in RLHF,
    Ouyang et al., 2022):

    .. math:: \delta_t = r_t + \gamma V_{t+1} - V_t, \quad A_t = \sum_{k \ge t} (\gamma\lambda)^{k-t} \delta_k

    over the tokens where ``mask`` is True, taken in order as one episode that terminates after the
    last of them (its next value is 0). Holes in the mask (e.g. tool output inside a multi-turn
    completion) are skipped, not treated as episode ends. The masked tokens are compacted with one
    stable sort and handed to the same :func:`policyopt.losses.advantages.gae` classic PPO uses.

    ``token_rewards, values, mask: [B, T]`` -> ``(advantages, returns)``, both ``[B, T]``, 0 on masked
    tokens; ``returns = advantages + values`` are the critic's targets. No gradient flows.
    """
    _check_bt("values", values, token_rewards)
    _check_bt("mask", mask, token_rewards)
    with torch.no_grad():
        m = mask.bool()
        order = torch.argsort((~m).to(torch.int8), dim=-1, stable=True)
        mc = torch.gather(m, 1, order).to(values.dtype)
        rc = torch.gather(token_rewards.to(values.dtype), 1, order) * mc
        vc = torch.gather(values, 1, order) * mc
        next_v = torch.cat([vc[:, 1:], vc.new_zeros(vc.shape[0], 1)], dim=1)
        # the one GAE (policyopt.losses.advantages.gae), time-major; compacted padding has r = V = 0,
        # so the episode ends after the last trained token without an explicit episode_end
        none = torch.zeros_like(rc.T, dtype=torch.bool)
        adv_c = gae(rc.T, vc.T, next_v.T, none, none, gamma, lam)[0].T * mc
        adv = torch.zeros_like(adv_c).scatter_(1, order, adv_c)
        returns = (adv + values) * m.to(values.dtype)
    return adv, returns


# ----------------------------------------------------------------------------------- masking


def first_position_after(tokens: Tensor, marker_id: int, mask: Tensor | None = None) -> Tensor:
    """``[B]`` position of the token right after the first ``marker_id`` in each row of ``tokens [B, T]``
    (-1 if the marker is absent or last, or the next position is masked). AdaCoT's decision token is
    the one after ``<think>``: whether the model opens a real reasoning block or closes it at once."""
    hit = tokens == marker_id
    T = tokens.shape[-1]
    pos = torch.where(hit.any(-1), hit.to(torch.int8).argmax(-1) + 1, torch.full_like(tokens[:, 0], T))
    valid = pos < T
    if mask is not None:
        valid = valid & mask.bool().gather(1, pos.clamp_max(T - 1)[:, None]).squeeze(1)
    return torch.where(valid, pos, torch.full_like(pos, -1))


def selective_loss_mask(
    mask: Tensor,
    tokens: Tensor | None = None,
    drop_token_ids: list[int] | tuple[int, ...] | Tensor | None = None,
    drop_positions: Tensor | None = None,
) -> Tensor:
    """Selective loss masking (AdaCoT, Lou et al., 2025): a copy of ``mask [B, T]`` with the tokens
    that must not be trained on set to False — every token whose id is in ``drop_token_ids``
    (needs ``tokens [B, T]``), and the position ``drop_positions[b]`` of each row (``[B]``, -1 = none;
    e.g. from :func:`first_position_after`). Masked tokens then get zero loss and zero gradient."""
    out = mask.bool().clone()
    if drop_token_ids is not None:
        if tokens is None:
            raise ValueError("drop_token_ids needs tokens [B, T]")
        _check_bt("tokens", tokens, out)
        ids = torch.as_tensor(drop_token_ids, device=tokens.device, dtype=tokens.dtype)
        out &= ~torch.isin(tokens, ids)
    if drop_positions is not None:
        if drop_positions.shape != (out.shape[0],):
            raise ValueError(f"drop_positions must be [B={out.shape[0]}], got {tuple(drop_positions.shape)}")
        rows = torch.nonzero(drop_positions >= 0).squeeze(-1)
        out[rows, drop_positions[rows]] = False
    return out
