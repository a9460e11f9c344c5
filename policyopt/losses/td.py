"""Temporal-difference targets and losses as pure functions on tensors (batch-first ``[B, ...]``).

Conventions: ``returns`` is the (n-step) discounted reward sum and ``discounts`` the factor in front
of the bootstrap value: ``gamma^m`` after ``m`` steps, ``0`` after a *termination*. A *truncation*
(time limit) is not a termination: it keeps the bootstrap, from the true final observation
(Pardo et al., 2018, "Time Limits in Reinforcement Learning", arXiv:1712.00378).
"""

from __future__ import annotations

import torch
from torch import Tensor

_MASKED = -1e9


def n_step_return(rewards: Tensor, terminated: Tensor, ended: Tensor, available: Tensor,
                  gamma: float) -> tuple[Tensor, Tensor, Tensor]:
    """n-step return from ``[B, n]`` windows starting at a transition (Sutton, 1988; Sutton & Barto,
    2018, eq. 7.1)::

        m = number of steps k < n with no episode end (termination OR truncation) before k
            and available[k]                                  (m >= 1: the first step always counts)
        G = sum_{k<m} gamma^k r_k
        discount = gamma^m * (1 - terminated_{m-1})

    ``ended = terminated | truncated``. Returns ``(G [B], discount [B], m [B])``; the bootstrap
    observation is the ``next_obs`` of step ``m - 1``.
    """
    n = rewards.shape[1]
    ends_before = torch.cumsum(ended.long(), 1) - ended.long()
    alive = (ends_before == 0) & available
    alive[:, 0] = True
    m = alive.long().sum(1)
    powers = gamma ** torch.arange(n + 1, dtype=rewards.dtype)
    g = (rewards * alive * powers[:n]).sum(1)
    last_term = terminated.gather(1, (m - 1)[:, None]).squeeze(1)
    return g, powers[m] * (~last_term).to(rewards.dtype), m


def td_target(returns: Tensor, discounts: Tensor, next_values: Tensor) -> Tensor:
    """``y = G + discount * V(s')`` (no gradient flows into the target)."""
    return returns + discounts * next_values.detach()


def masked_max(q: Tensor, mask: Tensor | None) -> Tensor:
    """``max_a Q(s, a)`` over allowed actions; ``q [B, A]``, ``mask [B, A]`` (True = allowed)."""
    if mask is not None:
        q = torch.where(mask, q, torch.full_like(q, _MASKED))
    return q.max(-1).values


def masked_argmax(q: Tensor, mask: Tensor | None) -> Tensor:
    """``argmax_a Q(s, a)`` over allowed actions, ``[B]``."""
    if mask is not None:
        q = torch.where(mask, q, torch.full_like(q, _MASKED))
    return q.argmax(-1)


def dqn_target(returns: Tensor, discounts: Tensor, q_next_target: Tensor, next_mask: Tensor | None = None,
               q_next_online: Tensor | None = None) -> Tensor:
    """DQN target ``y = G + discount * max_a Q_target(s', a)`` (Mnih et al., 2015, Nature 518);
    with ``q_next_online`` the double-DQN target (van Hasselt et al., 2016, "Deep Reinforcement
    Learning with Double Q-learning", arXiv:1509.06461)::

        y = G + discount * Q_target(s', argmax_a Q_online(s', a))

    ``q_next_* [B, A]``; masked actions (``next_mask == False``) are never chosen.
    """
    if q_next_online is None:
        v = masked_max(q_next_target, next_mask)
    else:
        a = masked_argmax(q_next_online, next_mask)
        v = q_next_target.gather(1, a[:, None]).squeeze(1)
    return td_target(returns, discounts, v)


def sarsa_target(returns: Tensor, discounts: Tensor, q_next: Tensor, next_actions: Tensor) -> Tensor:
    """SARSA target ``y = G + discount * Q(s', a')`` with the action ``a'`` the behaviour policy
    takes next (Rummery & Niranjan, 1994; Sutton & Barto, 2018, eq. 6.7). ``q_next [B, A]``."""
    return td_target(returns, discounts, q_next.gather(1, next_actions.long()[:, None]).squeeze(1))


def expected_sarsa_target(returns: Tensor, discounts: Tensor, q_next: Tensor, next_probs: Tensor) -> Tensor:
    """Expected SARSA target ``y = G + discount * sum_a pi(a|s') Q(s', a)`` (van Seijen et al., 2009,
    "A theoretical and empirical analysis of Expected Sarsa"). ``q_next, next_probs [B, A]``."""
    return td_target(returns, discounts, (next_probs * q_next).sum(-1))


def epsilon_greedy_probs(q: Tensor, epsilon: float, mask: Tensor | None = None) -> Tensor:
    """Action probabilities of the epsilon-greedy policy over allowed actions, ``[B, A]``:
    ``(1 - eps) * onehot(argmax) + eps / |allowed|``."""
    allowed = torch.ones_like(q, dtype=torch.bool) if mask is None else mask
    uniform = allowed.to(q.dtype) / allowed.sum(-1, keepdim=True).to(q.dtype)
    greedy = torch.nn.functional.one_hot(masked_argmax(q, mask), q.shape[-1]).to(q.dtype)
    return (1.0 - epsilon) * greedy + epsilon * uniform


def sac_soft_target(returns: Tensor, discounts: Tensor, q1_next: Tensor, q2_next: Tensor, next_logp: Tensor,
                    alpha: Tensor | float) -> Tensor:
    """Soft Bellman target of SAC with clipped double Q (Haarnoja et al., 2018, "Soft Actor-Critic
    Algorithms and Applications", arXiv:1812.05905, eq. 3 with Fujimoto et al., 2018's min)::

        y = G + discount * ( min(Q1_targ(s', a'), Q2_targ(s', a')) - alpha * log pi(a'|s') ),  a' ~ pi(.|s')

    All inputs ``[B]``.
    """
    return td_target(returns, discounts, torch.minimum(q1_next, q2_next) - alpha * next_logp)


def discrete_sac_soft_value(q_next_min: Tensor, next_probs: Tensor, next_logp: Tensor,
                            alpha: Tensor | float) -> Tensor:
    """Soft state value for discrete actions, as an exact expectation (Christodoulou, 2019,
    "Soft Actor-Critic for Discrete Action Settings", arXiv:1910.07207, eq. 10)::

        V(s') = sum_a pi(a|s') ( min_i Q_i_targ(s', a) - alpha * log pi(a|s') )

    ``[B, A]`` inputs -> ``[B]``.
    """
    return (next_probs * (q_next_min - alpha * next_logp)).sum(-1)


def sac_actor_loss(logp: Tensor, q_min: Tensor, alpha: Tensor | float) -> Tensor:
    """``J_pi = E[alpha * log pi(a|s) - min_i Q_i(s, a)]``, ``a ~ pi`` reparameterised
    (Haarnoja et al., 2018, eq. 7). ``[B]`` inputs."""
    return (alpha * logp - q_min).mean()


def sac_temperature_loss(log_alpha: Tensor, logp: Tensor, target_entropy: float) -> Tensor:
    """Automatic entropy tuning (Haarnoja et al., 2018, eq. 18,
    ``J(alpha) = E[-alpha log pi(a|s) - alpha * H_target]``), written in ``log alpha`` as in
    Stable-Baselines3 and the authors' code::

        J = -mean( log_alpha * (log pi(a|s) + H_target) )     (log pi detached)

    Its gradient lowers alpha when the policy entropy ``-log pi`` is above ``H_target``.
    """
    return -(log_alpha * (logp.detach() + target_entropy)).mean()


def huber(x: Tensor, delta: float = 1.0) -> Tensor:
    """Elementwise Huber loss (the smooth L1 of DQN's clipped error, Mnih et al., 2015)."""
    a = x.abs()
    return torch.where(a <= delta, 0.5 * x * x, delta * (a - 0.5 * delta))
