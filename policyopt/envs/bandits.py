"""Coupled restless bandits with a budget across arms (a combinatorial action).

Serves "Reinforcement learning with combinatorial actions for coupled restless bandits" (Xu et al.,
ICLR 2025, SEQUOIA) and the restless-bandit literature it builds on (Whittle, "Restless bandits:
activity allocation in a changing world", J. Appl. Prob. 1988).

- **Arms**: ``n_arms`` two-state Markov chains (state 1 = good). Each episode draws, per arm, the
  passive probability of being good next ``p_passive[s]`` (``s = 0: U(0.05, 0.45)``,
  ``s = 1: U(0.4, 0.8)``), an active lift per state ``U(0.05, 0.45)`` (``p_active = min(p_passive + lift, 0.99)``),
  a value ``U(0.5, 1.5)`` and a cost (``1`` or ``U(0.5, 1.5)`` with ``random_costs``).
- **Action**: ``Box(-10, 10, (n_arms,))`` priority scores. Arms with score ``>= 0`` are requested and
  activated in decreasing score order while the cumulative cost stays within ``budget`` (the first
  arm that does not fit and all after it stay passive): every action is feasible by construction,
  the documented handling of over-budget requests. ``info["active"]`` shows the chosen set.
- **Reward**: ``sum_k value_k * s'_k`` (value of the arms in the good state after the transition).
- **Observation** (float32, ``7 * n_arms + 1``): states, ``p_passive[0..1]``, ``p_active[0..1]``,
  values, costs, ``t / horizon``: the arm parameters are known (planning setting).
- **Termination**: none; truncated after ``horizon`` steps.
- **Baselines** (:func:`baseline_scores`): ``myopic`` (largest expected one-step gain per cost) and
  ``whittle`` (Whittle index per cost, computed by bisection on the passive subsidy with discounted
  value iteration, vectorised over copies and arms), and ``random``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from policyopt.envs.core import NativeVectorEnv, SingleEnv, check_positive_int, check_range


class RestlessBanditVectorEnv(NativeVectorEnv):
    """``num_envs`` coupled restless bandits (see the module docstring)."""

    state_fields = ("state", "p_passive", "p_active", "value", "cost", "period", "active")

    def __init__(self, num_envs: int = 1, n_arms: int = 10, budget: float = 3.0, horizon: int = 100,
                 random_costs: bool = True, autoreset_mode: str = "next_step") -> None:
        super().__init__(num_envs, autoreset_mode)
        self.n_arms = check_positive_int("n_arms", n_arms)
        self.budget = check_range("budget", budget, 0.0, np.inf)
        self.horizon = check_positive_int("horizon", horizon)
        self.random_costs = bool(random_costs)
        n, k = self.num_envs, self.n_arms
        self.state = np.zeros((n, k), dtype=np.int64)
        self.p_passive = np.zeros((n, k, 2))
        self.p_active = np.zeros((n, k, 2))
        self.value = np.zeros((n, k))
        self.cost = np.ones((n, k))
        self.period = np.zeros(n, dtype=np.int64)
        self.active = np.zeros((n, k), dtype=bool)
        self._set_spaces(spaces.Box(0.0, 2.0, (7 * k + 1,), np.float32), spaces.Box(-10.0, 10.0, (k,), np.float32))

    def _reset_rows(self, rows: np.ndarray, options: dict[str, Any] | None) -> None:
        k = self.n_arms
        u = self._uniform(rows, 7 * k).reshape(len(rows), 7, k)
        self.p_passive[rows, :, 0] = 0.05 + 0.4 * u[:, 0]
        self.p_passive[rows, :, 1] = 0.4 + 0.4 * u[:, 1]
        lift = 0.05 + 0.4 * np.stack([u[:, 2], u[:, 6]], axis=-1)  # [r, k, state]
        self.p_active[rows] = np.minimum(self.p_passive[rows] + lift, 0.99)
        self.value[rows] = 0.5 + u[:, 3]
        self.cost[rows] = 0.5 + u[:, 4] if self.random_costs else 1.0
        self.state[rows] = (u[:, 5] < 0.5).astype(np.int64)
        self.period[rows] = 0
        self.active[rows] = False

    def chosen_arms(self, scores: np.ndarray, cost: np.ndarray) -> np.ndarray:
        """``[n, n_arms]`` bool: requested arms (score >= 0) by decreasing score within the budget."""
        order = np.argsort(-scores, axis=1, kind="stable")
        sorted_scores = np.take_along_axis(scores, order, axis=1)
        cum_cost = np.cumsum(np.take_along_axis(cost, order, axis=1), axis=1)
        take_sorted = (sorted_scores >= 0.0) & (cum_cost <= self.budget + 1e-12)
        active = np.zeros_like(take_sorted)
        np.put_along_axis(active, order, take_sorted, axis=1)
        return active

    def _step_rows(self, rows: np.ndarray, actions: np.ndarray):
        active = self.chosen_arms(actions.astype(np.float64), self.cost[rows])
        probs = np.where(active[..., None], self.p_active[rows], self.p_passive[rows])  # [r, k, 2]
        p_good = np.take_along_axis(probs, self.state[rows][..., None], axis=2)[..., 0]
        new_state = (self._uniform(rows, self.n_arms) < p_good).astype(np.int64)
        self.state[rows] = new_state
        self.active[rows] = active
        self.period[rows] += 1
        reward = (self.value[rows] * new_state).sum(axis=1)
        return reward, np.zeros(len(rows), dtype=bool), self.period[rows] >= self.horizon

    def _observe(self) -> np.ndarray:
        parts = [self.state, self.p_passive[..., 0], self.p_passive[..., 1], self.p_active[..., 0],
                 self.p_active[..., 1], self.value, self.cost, (self.period / self.horizon)[:, None]]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _infos(self) -> dict[str, np.ndarray]:
        return {"active": self.active.copy()}


def whittle_indices(p_passive: np.ndarray, p_active: np.ndarray, value: np.ndarray, gamma: float = 0.95,
                    iters: int = 25, vi_iters: int = 150) -> np.ndarray:
    """Whittle index ``[..., 2]`` of each state of two-state arms (``p_*: [..., 2]``, ``value: [...]``).

    The index of state ``s`` is the passive subsidy ``lam`` at which acting and resting are equally
    good in ``s``: bisection on ``lam`` with discounted value iteration of the subsidised arm.
    """
    bound = 2.0 * float(np.max(value, initial=0.0)) / (1.0 - gamma) + 1.0
    lo = np.full((*value.shape, 2), -bound)
    hi = np.full_like(lo, bound)
    pp, pa = p_passive[..., None, :], p_active[..., None, :]  # [..., 1, arm state]
    val = value[..., None, None]
    diag = np.arange(2)
    for _ in range(iters):
        lam = 0.5 * (lo + hi)  # [..., queried state]: one subsidy per queried state
        v = np.zeros((*lam.shape, 2))  # [..., queried state, arm state]
        for _ in range(vi_iters):
            v0, v1 = gamma * v[..., 0:1], gamma * v[..., 1:2]
            q_passive = lam[..., None] + pp * (val + v1) + (1.0 - pp) * v0
            q_active = pa * (val + v1) + (1.0 - pa) * v0
            v = np.maximum(q_passive, q_active)
        gain = q_active[..., diag, diag] - q_passive[..., diag, diag]
        lo = np.where(gain > 0, lam, lo)
        hi = np.where(gain > 0, hi, lam)
    return 0.5 * (lo + hi)


def baseline_scores(env: RestlessBanditVectorEnv, name: str, rng: np.random.Generator | None = None,
                    whittle: np.ndarray | None = None) -> np.ndarray:
    """``[num_envs, n_arms]`` scores in ``[0.5, 1]`` (every arm requested, ranked) for a baseline policy.

    ``myopic``: expected one-step gain of acting per unit cost; ``whittle``: Whittle index per cost
    (pass precomputed ``whittle_indices`` as ``whittle`` to avoid recomputing); ``random``.
    """
    s = env.state[..., None]
    if name == "myopic":
        gain = env.value * (np.take_along_axis(env.p_active, s, 2) - np.take_along_axis(env.p_passive, s, 2))[..., 0]
        priority = gain / env.cost
    elif name == "whittle":
        w = whittle if whittle is not None else whittle_indices(env.p_passive, env.p_active, env.value)
        priority = np.take_along_axis(w, s, 2)[..., 0] / env.cost
    elif name == "random":
        priority = (rng or np.random.default_rng(0)).random(env.state.shape)
    else:
        raise ValueError(f"unknown baseline {name!r}; choose myopic, whittle or random")
    lo, hi = priority.min(axis=1, keepdims=True), priority.max(axis=1, keepdims=True)
    return 0.5 + 0.5 * (priority - lo) / np.maximum(hi - lo, 1e-12)


def make_single(**kwargs: Any) -> SingleEnv:
    """The single-env form (entry point of ``gymnasium.make("policyopt/RestlessBandits-v0")``)."""
    return SingleEnv(RestlessBanditVectorEnv, **kwargs)
