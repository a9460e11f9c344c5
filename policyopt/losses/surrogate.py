"""Policy-gradient surrogate losses (pure functions). All inputs are flat ``[B]`` tensors."""

from __future__ import annotations

import torch
from torch import Tensor


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


def ppo_clip_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    clip_low: float,
    clip_high: float | None = None,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""PPO's clipped surrogate (Schulman et al., 2017, "Proximal Policy Optimization Algorithms"):

    .. math:: L = -\mathbb{E}\big[\min(\rho A,\ \mathrm{clip}(\rho, 1-\epsilon_l, 1+\epsilon_h) A)\big],
              \quad \rho = \exp(\log\pi - \log\pi_{old})

    ``clip_high`` defaults to ``clip_low`` (symmetric); a larger ``clip_high`` is DAPO's
    "clip-higher". Returns ``(loss, clip_fraction, approx_kl)`` where ``approx_kl`` is the k3
    estimator :math:`\mathbb{E}[(\rho - 1) - \log\rho]`.
    """
    high = clip_low if clip_high is None else clip_high
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + high) * advantages
    loss = masked_mean(-torch.minimum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_frac = masked_mean(((ratio < 1.0 - clip_low) | (ratio > 1.0 + high)).to(logp.dtype), mask)
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask)
    return loss, clip_frac, approx_kl
