"""Value-function losses (pure functions on flat ``[B]`` tensors)."""

from __future__ import annotations

import torch
from torch import Tensor

from policyopt.losses.surrogate import masked_mean


def value_loss(
    values: Tensor,
    returns: Tensor,
    old_values: Tensor | None = None,
    clip: float | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    r"""Half squared error :math:`\tfrac12 (V - R)^2`, optionally with PPO's value clipping
    (as in the PPO reference implementation, discussed in Engstrom et al., 2020,
    "Implementation Matters in Deep Policy Gradients"):

    .. math:: \tfrac12 \max\big((V - R)^2,\ (V_{old} + \mathrm{clip}(V - V_{old}, -c, c) - R)^2\big)
    """
    err = (values - returns) ** 2
    if clip is not None and old_values is not None:
        clipped = old_values + (values - old_values).clamp(-clip, clip)
        err = torch.maximum(err, (clipped - returns) ** 2)
    return 0.5 * masked_mean(err, mask)
