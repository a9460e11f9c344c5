"""Advantage estimators, as pure functions on batch-first tensors.

Shapes: ``[T, N]`` means time-major rollouts of ``N`` parallel environments.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    episode_end: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    r"""Generalized advantage estimation (Schulman et al., 2016, "High-Dimensional Continuous
    Control Using Generalized Advantage Estimation").

    .. math::
        \delta_t = r_t + \gamma (1 - d^{term}_t) V(s_{t+1}) - V(s_t), \qquad
        A_t = \delta_t + \gamma\lambda (1 - d^{end}_t) A_{t+1}

    ``next_values[t]`` is the value of the state *reached* by step ``t`` — for a truncated episode
    that is the true final observation, so truncation bootstraps while termination does not.
    ``episode_end`` (terminated or truncated) cuts the recursion so no transition leaks across an
    episode boundary.

    Args:
        rewards, values, next_values: ``[T, N]`` float.
        terminated, episode_end: ``[T, N]`` bool or {0, 1}.
    Returns:
        ``(advantages, returns)``, both ``[T, N]``; ``returns = advantages + values``.
    """
    not_term = 1.0 - terminated.to(values.dtype)
    not_end = 1.0 - episode_end.to(values.dtype)
    deltas = rewards + gamma * not_term * next_values - values
    decay = gamma * lam * not_end
    adv = torch.empty_like(deltas)
    last = torch.zeros_like(deltas[0])
    for t in range(deltas.shape[0] - 1, -1, -1):
        last = deltas[t] + decay[t] * last
        adv[t] = last
    return adv, adv + values


def discounted_returns(
    rewards: Tensor, next_values: Tensor, terminated: Tensor, episode_end: Tensor, gamma: float
) -> Tensor:
    r"""Monte-Carlo returns-to-go :math:`G_t = r_t + \gamma G_{t+1}` within an episode (REINFORCE,
    Williams 1992), bootstrapped with ``next_values`` only where the data stops without a
    termination (a truncation or the end of the rollout). Shapes ``[T, N]``."""
    not_term = 1.0 - terminated.to(rewards.dtype)
    not_end = 1.0 - episode_end.to(rewards.dtype)
    out = torch.empty_like(rewards)
    # At the last step of the rollout, bootstrap unless terminated.
    carry = next_values[-1] * not_term[-1]
    for t in range(rewards.shape[0] - 1, -1, -1):
        boot = next_values[t] * not_term[t] * (1.0 - not_end[t])
        carry = rewards[t] + gamma * (not_end[t] * carry + boot)
        out[t] = carry
    return out


def normalize(x: Tensor, mask: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """Zero-mean, unit-std normalisation over the valid entries (``mask``) of ``x``."""
    if mask is None:
        return (x - x.mean()) / (x.std() + eps)
    m = mask.to(x.dtype)
    n = m.sum().clamp_min(1.0)
    mean = (x * m).sum() / n
    var = (((x - mean) * m) ** 2).sum() / (n - 1).clamp_min(1.0)
    return (x - mean) / (var.sqrt() + eps) * m
