"""Policy-gradient surrogate losses (pure functions).

:func:`clipped_objective` is the one clipped objective of every PPO-style method in the library,
classic and LM alike: per element, no aggregation. Callers compose it with their aggregation
(:func:`masked_mean` over samples here, token/sequence/constant normalisers in
:mod:`policyopt.losses.policy_lm`) and log :func:`clip_statistics` under the shared metric names
(``stats/clip_frac``, ``stats/approx_kl``; see ``docs/metrics.md``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from policyopt.losses.kl import kl_estimate


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``x`` over ``mask`` (all entries when ``mask`` is None)."""
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def policy_gradient_loss(logp: Tensor, advantages: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""REINFORCE / A2C loss :math:`-\mathbb{E}[A \log\pi(a|s)]` (Williams, 1992; Mnih et al., 2016,
    "Asynchronous Methods for Deep RL")."""
    return masked_mean(-advantages * logp, mask)


def clipped_objective(
    ratio: Tensor,
    advantages: Tensor,
    clip_low: float,
    clip_high: float | None = None,
    dual_clip: float | None = None,
) -> tuple[Tensor, Tensor]:
    r"""PPO's clipped objective per element (Schulman et al., 2017), as a loss to minimise:

    .. math:: \ell = -\min\big(\rho A,\ \mathrm{clip}(\rho, 1-\epsilon_l, 1+\epsilon_h) A\big)

    ``clip_high`` defaults to ``clip_low``; a larger one is DAPO's clip-higher (Yu et al., 2025).
    ``dual_clip`` = c > 1 bounds the objective of negative advantages below by ``c * A`` (Ye et al.,
    2020, "Mastering Complex Control in MOBA Games with Deep RL"). Any shape; ``ratio`` and
    ``advantages`` broadcast. Returns ``(loss elements, outside)``: ``outside`` (bool, no grad) marks
    ratios outside ``[1 - clip_low, 1 + clip_high]``, what ``stats/clip_frac`` counts.
    """
    high = clip_low if clip_high is None else clip_high
    if clip_low < 0 or high < 0 or clip_low >= 1:
        raise ValueError(f"need 0 <= clip_low < 1 and clip_high >= 0, got {clip_low}, {high}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    obj = torch.minimum(ratio * advantages, ratio.clamp(1.0 - clip_low, 1.0 + high) * advantages)
    if dual_clip is not None:
        obj = torch.where(advantages < 0, torch.maximum(obj, dual_clip * advantages), obj)
    with torch.no_grad():
        outside = (ratio < 1.0 - clip_low) | (ratio > 1.0 + high)
    return -obj, outside


@torch.no_grad()
def clip_statistics(outside: Tensor, logp: Tensor, old_logp: Tensor) -> tuple[Tensor, Tensor]:
    r"""Per-element terms of the shared metrics, to be averaged by the caller over its mask:
    ``stats/clip_frac`` (share of ratios outside the clip range) and ``stats/approx_kl``, the k3
    estimate of :math:`KL(\pi_{old}\|\pi)` from the behaviour samples, :math:`(\rho - 1) - \log\rho`."""
    return outside.to(logp.dtype), kl_estimate(old_logp, logp, "k3")


def ppo_clip_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    clip_low: float,
    clip_high: float | None = None,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Classic PPO's loss on flat ``[B]`` samples: :func:`clipped_objective` averaged over ``mask``.

    Returns ``(loss, clip_fraction, approx_kl)`` (:func:`clip_statistics`, averaged the same way).
    """
    ratio = (logp - old_logp).exp()
    per, outside = clipped_objective(ratio, advantages, clip_low, clip_high)
    loss = masked_mean(per, mask)
    clip, kl = clip_statistics(outside, logp, old_logp)
    return loss, masked_mean(clip, mask), masked_mean(kl, mask)
