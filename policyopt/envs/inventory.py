"""Stochastic multi-item lot sizing (periodic-review inventory) with an explicit post-decision state.

Serves "PDPPO: post-decision proximal policy optimization with dual critic networks" (Felizardo et
al., 2024), which learns a critic on the *post-decision state* (Powell, "Approximate Dynamic
Programming", 2nd ed. 2011, ch. 4): the state right after the decision and before the random demand.
Here the transition splits into a deterministic part (production arrives: ``I + q``) and a random part
(demand is served from it), so the post-decision state is exposed in ``info["post_decision_obs"]``.

- **State**: inventory ``I [n_items]`` and the period ``t``. At most ``max_inventory`` per item is stored.
- **Action**: ``Box(0, 1, (n_items,))``: production quantity ``q = round(a * max_order)`` per item.
  Out-of-bound actions are clipped. If ``sum(q)`` exceeds the shared ``capacity``, every ``q`` is
  scaled down proportionally (floored) — the documented handling of infeasible plans.
- **Transition**: post-decision inventory ``I^x = min(I + q, max_inventory)``; demand ``D_k ~
  Poisson(demand_mean_k * season(t))`` (inverse-CDF sampling, truncated at a tail mass of 1e-12);
  sales ``min(I^x, D)``; unmet demand is lost; ``I' = I^x - sales``.
- **Reward**: ``-(setup_cost * [q > 0] + unit_cost * q + holding_cost * I' + lost_sale_cost * lost)
  / reward_scale``, summed over items.
- **Observation** (float32 ``n_items + 2``): ``I / max_inventory``, ``t / horizon`` and the season factor
  of ``t``. ``info["post_decision_obs"]`` has the same layout for ``I^x`` (at the *previous* decision;
  at reset it equals the observation).
- **Termination**: after ``horizon`` periods (a finite-horizon problem: ``terminated``).
- **Baseline**: a tuned ``(s, S)`` policy (:func:`tune_s_S`): order up to ``S`` when ``I < s``, chosen by
  grid search on simulated episodes, every candidate evaluated in one native batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from scipy import stats

from policyopt.envs.core import NativeVectorEnv, SingleEnv, check_positive_int, check_range


class LotSizingVectorEnv(NativeVectorEnv):
    """``num_envs`` copies of the lot-sizing problem (see the module docstring)."""

    state_fields = ("inventory", "post_inventory", "period")

    def __init__(self, num_envs: int = 1, n_items: int = 3, demand_mean: tuple[float, ...] = (4.0, 6.0, 8.0),
                 seasonality: float = 0.3, horizon: int = 52, max_order: int = 20, capacity: int = 30,
                 max_inventory: int = 60, setup_cost: float = 10.0, unit_cost: float = 1.0,
                 holding_cost: float = 0.5, lost_sale_cost: float = 6.0, reward_scale: float = 50.0,
                 autoreset_mode: str = "next_step") -> None:
        super().__init__(num_envs, autoreset_mode)
        self.n_items = check_positive_int("n_items", n_items)
        self.demand_mean = np.asarray(demand_mean, dtype=np.float64).reshape(-1)
        if self.demand_mean.shape != (self.n_items,) or (self.demand_mean <= 0).any():
            raise ValueError(f"demand_mean must be {self.n_items} positive numbers, got {demand_mean!r}")
        self.seasonality = check_range("seasonality", seasonality, 0.0, 0.99)
        self.horizon = check_positive_int("horizon", horizon)
        self.max_order = check_positive_int("max_order", max_order)
        self.capacity = check_positive_int("capacity", capacity)
        self.max_inventory = check_positive_int("max_inventory", max_inventory)
        self.costs = {name: check_range(name, value, 0.0, np.inf) for name, value in
                      [("setup_cost", setup_cost), ("unit_cost", unit_cost), ("holding_cost", holding_cost),
                       ("lost_sale_cost", lost_sale_cost)]}
        self.reward_scale = check_range("reward_scale", reward_scale, 1e-9, np.inf)
        peak = self.demand_mean.max() * (1 + self.seasonality)
        support = np.arange(int(stats.poisson.isf(1e-12, peak)) + 2)
        lam = self.demand_mean[None, :] * self.season(np.arange(52))[:, None]  # [52, n_items]
        self._cdf = stats.poisson.cdf(support[None, None, :], lam[..., None])  # [52, n_items, support]
        n = self.num_envs
        self.inventory = np.zeros((n, self.n_items), dtype=np.int64)
        self.post_inventory = np.zeros((n, self.n_items), dtype=np.int64)
        self.period = np.zeros(n, dtype=np.int64)
        obs = spaces.Box(-1.0, 2.0, (self.n_items + 2,), np.float32)
        self._set_spaces(obs, spaces.Box(0.0, 1.0, (self.n_items,), np.float32))

    def season(self, period: np.ndarray) -> np.ndarray:
        """Demand multiplier ``1 + seasonality * sin(2 pi t / 52)`` for periods ``[n]``."""
        return 1.0 + self.seasonality * np.sin(2.0 * np.pi * period / 52.0)

    def quantities(self, actions: np.ndarray) -> np.ndarray:
        """Integer production ``[n, n_items]`` for actions in ``[0, 1]``, scaled down to the capacity."""
        q = np.floor(np.asarray(actions, dtype=np.float64) * self.max_order + 0.5).astype(np.int64)
        total = q.sum(axis=1, keepdims=True)
        scale = np.minimum(1.0, self.capacity / np.maximum(total, 1))
        return np.where(total > self.capacity, np.floor(q * scale).astype(np.int64), q)

    def _reset_rows(self, rows: np.ndarray, options: dict[str, Any] | None) -> None:
        u = self._uniform(rows, self.n_items)
        start = np.floor(u * 2.0 * self.demand_mean).astype(np.int64)  # random initial stock
        self.inventory[rows] = np.minimum(start, self.max_inventory)
        self.post_inventory[rows] = self.inventory[rows]
        self.period[rows] = 0

    def _step_rows(self, rows: np.ndarray, actions: np.ndarray):
        q = self.quantities(actions)
        post = np.minimum(self.inventory[rows] + q, self.max_inventory)
        cdf = self._cdf[self.period[rows] % 52]
        demand = (self._uniform(rows, self.n_items)[..., None] > cdf).sum(axis=-1)
        sales = np.minimum(post, demand)
        lost = demand - sales
        new_inv = post - sales
        c = self.costs
        cost = (c["setup_cost"] * (q > 0) + c["unit_cost"] * q + c["holding_cost"] * new_inv
                + c["lost_sale_cost"] * lost).sum(axis=1)
        self.post_inventory[rows] = post
        self.inventory[rows] = new_inv
        self.period[rows] += 1
        terminated = self.period[rows] >= self.horizon
        return -cost / self.reward_scale, terminated, np.zeros(len(rows), dtype=bool)

    def _features(self, inventory: np.ndarray, period: np.ndarray) -> np.ndarray:
        return np.concatenate([inventory / self.max_inventory, (period / self.horizon)[:, None],
                               self.season(period)[:, None] - 1.0 + 0.5], axis=1).astype(np.float32)

    def _observe(self) -> np.ndarray:
        return self._features(self.inventory, self.period)

    def post_decision_obs(self, actions: np.ndarray) -> np.ndarray:
        """``[num_envs, obs_dim]`` post-decision observation of taking ``actions`` now (no state change)."""
        post = np.minimum(self.inventory + self.quantities(actions), self.max_inventory)
        return self._features(post, self.period)

    def _infos(self) -> dict[str, np.ndarray]:
        last = np.maximum(self.period - 1, 0)
        return {"post_decision_obs": self._features(self.post_inventory, last)}


def s_S_actions(env: LotSizingVectorEnv, s: np.ndarray, S: np.ndarray) -> np.ndarray:
    """(s, S) actions ``[num_envs, n_items]``: order ``S - I`` when ``I < s``; ``s, S``: ``[num_envs, n_items]``."""
    order = np.where(env.inventory < s, np.clip(S - env.inventory, 0, env.max_order), 0)
    return order / env.max_order


def evaluate_s_S(s: np.ndarray, S: np.ndarray, episodes: int, seed: int, **env_kwargs: Any) -> np.ndarray:
    """Mean episode return ``[n_policies]`` of (s, S) policies ``[n_policies, n_items]``, all in one batch."""
    n_pol = s.shape[0]
    env = LotSizingVectorEnv(num_envs=n_pol * episodes, **env_kwargs)
    env.reset(seed=seed)
    s_rep, S_rep = np.repeat(s, episodes, axis=0), np.repeat(S, episodes, axis=0)
    rows, total = np.arange(env.num_envs), np.zeros(env.num_envs)
    for _ in range(env.horizon):
        reward, _, _ = env._step_rows(rows, s_S_actions(env, s_rep, S_rep))
        total += reward
    return total.reshape(n_pol, episodes).mean(axis=1)


def tune_s_S(episodes: int = 32, seed: int = 0, grid: int = 12, **env_kwargs: Any) -> dict[str, Any]:
    """Grid-search a common ``(s, S)`` scaled per item by its mean demand: ``s = a * mean``, ``S = b * mean``.

    Returns ``{"s": [n_items], "S": [n_items], "return": float}`` (mean return on the tuning seeds).
    """
    probe = LotSizingVectorEnv(num_envs=1, **env_kwargs)
    mean = probe.demand_mean
    a_grid = np.linspace(0.0, 3.0, grid)
    b_grid = np.linspace(0.5, 6.0, grid)
    a, b = (g.reshape(-1) for g in np.meshgrid(a_grid, b_grid))
    keep = b > a
    a, b = a[keep], b[keep]
    s = np.ceil(a[:, None] * mean[None, :]).astype(np.int64)
    S = np.minimum(np.ceil(b[:, None] * mean[None, :]), probe.max_inventory).astype(np.int64)
    returns = evaluate_s_S(s, S, episodes, seed, **env_kwargs)
    best = int(np.argmax(returns))
    return {"s": s[best], "S": S[best], "return": float(returns[best])}


def make_single(**kwargs: Any) -> SingleEnv:
    """The single-env form (entry point of ``gymnasium.make("policyopt/LotSizing-v0")``)."""
    return SingleEnv(LotSizingVectorEnv, **kwargs)
