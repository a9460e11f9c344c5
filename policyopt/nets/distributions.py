"""Action distributions as small pure functions on parameter tensors (no torch.distributions
objects on the hot path: their argument validation costs more than the maths for small nets).

Every ``*_logp_entropy`` returns ``(log_prob [B], entropy [B])``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_MASKED = -1e9  # logit for a masked action: exp() underflows to exactly 0 in float32


def masked_logits(logits: Tensor, mask: Tensor | None) -> Tensor:
    """Replace the logits of invalid actions (``mask == False``) by a large negative number."""
    if mask is None:
        return logits
    return torch.where(mask, logits, torch.full_like(logits, _MASKED))


def categorical_sample(logits: Tensor, generator: torch.Generator | None, deterministic: bool) -> Tensor:
    """Sample ``[B]`` indices from ``[B, K]`` logits (argmax when deterministic) via Gumbel-max."""
    if deterministic:
        return logits.argmax(-1)
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).clamp_(1e-20, 1.0)
    return (logits - (-u.log()).log()).argmax(-1)


def categorical_logp_entropy(logits: Tensor, actions: Tensor, entropy_grad: bool = True) -> tuple[Tensor, Tensor]:
    """Log-probability of integer ``actions [B]`` and entropy under ``logits [B, K]``
    (the entropy is computed outside the autograd graph when ``entropy_grad`` is False)."""
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    if not entropy_grad:
        logp_all = logp_all.detach()
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def multi_categorical_logp_entropy(
    logits: Tensor, actions: Tensor, nvec: tuple[int, ...]
) -> tuple[Tensor, Tensor]:
    """Product of independent categoricals (MultiDiscrete): ``logits [B, sum(nvec)]``,
    ``actions [B, len(nvec)]``; log-probs and entropies add up over the components."""
    logp = torch.zeros(actions.shape[0], dtype=logits.dtype)
    ent = torch.zeros_like(logp)
    for i, chunk in enumerate(torch.split(logits, list(nvec), dim=-1)):
        lp, e = categorical_logp_entropy(chunk, actions[:, i])
        logp = logp + lp
        ent = ent + e
    return logp, ent


def multi_categorical_sample(
    logits: Tensor, nvec: tuple[int, ...], generator: torch.Generator | None, deterministic: bool
) -> Tensor:
    chunks = torch.split(logits, list(nvec), dim=-1)
    return torch.stack([categorical_sample(c, generator, deterministic) for c in chunks], dim=-1)


def normal_sample(mean: Tensor, log_std: Tensor, generator: torch.Generator | None, deterministic: bool) -> Tensor:
    """Sample a diagonal Gaussian ``[B, D]`` (the mean when deterministic)."""
    if deterministic:
        return mean
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
    return mean + noise * log_std.exp()


def normal_logp_entropy(mean: Tensor, log_std: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
    """Diagonal Gaussian log-density of ``actions [B, D]`` and entropy, summed over ``D``."""
    log_std = log_std.expand_as(mean)
    z = (actions - mean) * torch.exp(-log_std)
    logp = (-0.5 * z * z - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    entropy = (log_std + 0.5 * (1.0 + math.log(2 * math.pi))).sum(-1)
    return logp, entropy
