"""Real-time bidding with a campaign budget: one episode is one campaign of ``n_requests`` auctions.

Serves "Real-Time Bidding by Reinforcement Learning in Display Advertising" (Cai et al., WSDM 2017),
whose MDP has state (remaining requests, remaining budget, request features), the bid price as action
and clicks as reward, and a market-price distribution learned from auction logs.

- **Synthetic auction log** (drawn per episode from the copy's stream, or exported with
  :func:`synthetic_auction_log`): each request has a predicted CTR ``pctr = sigmoid(N(ctr_logit_mean,
  ctr_logit_std))``, a click ``~ Bernoulli(pctr)`` and a market price (the highest competing bid)
  ``m = exp(price_log_mean + price_ctr_slope * z_ctr + price_log_std * z)``: log-normal, and higher for
  more valuable requests. The campaign budget is ``budget_ratio`` times the sum of all market prices.
- **Action**: ``Box(0, 1, (1,))``: bid ``b = action * max_bid``; clipped to the bounds.
- **Transition**: second-price auction: the bid wins when ``b >= m`` and ``m <= remaining budget``; a
  win pays ``m``.
- **Reward**: the ``pctr`` of a won request (``reward="pctr"``, default: the expected click, less
  noise) or its sampled click (``reward="click"``).
- **Observation** (float32, 5): ``remaining requests fraction``, ``remaining budget fraction``,
  ``pctr / ctr_mean``, the logit of ``pctr`` (standardised) and the budget pace
  ``remaining budget fraction / remaining requests fraction``.
- **Termination**: after ``n_requests`` auctions (the campaign ends). ``info`` has ``clicks``,
  ``expected_clicks``, ``spent`` and ``wins`` so far.
- **Baselines** (:func:`baseline_bids`): ``constant`` bid, ``linear`` bid ``base * pctr / ctr_mean``
  (Perlich et al., "Bid optimizing and inventory scoring in targeted online advertising", KDD 2012)
  and ``paced_linear`` (linear bid times the budget pace); :func:`tune_baseline` grid-searches the
  base bid on training seeds, all candidates in one batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from policyopt.envs.core import NativeVectorEnv, SingleEnv, check_positive_int, check_range


class BiddingVectorEnv(NativeVectorEnv):
    """``num_envs`` bidding campaigns (see the module docstring)."""

    state_fields = ("pctr", "clicks", "market_price", "budget", "remaining", "request", "won_clicks",
                    "won_pctr", "wins")

    def __init__(self, num_envs: int = 1, n_requests: int = 300, budget_ratio: float = 0.25,
                 max_bid: float = 300.0, ctr_logit_mean: float = -3.0, ctr_logit_std: float = 1.0,
                 price_log_mean: float = 4.0, price_log_std: float = 0.5, price_ctr_slope: float = 0.3,
                 reward: str = "pctr", autoreset_mode: str = "next_step") -> None:
        super().__init__(num_envs, autoreset_mode)
        if reward not in ("click", "pctr"):
            raise ValueError(f"reward must be 'click' or 'pctr', got {reward!r}")
        self.reward_kind = reward
        self.n_requests = check_positive_int("n_requests", n_requests)
        self.budget_ratio = check_range("budget_ratio", budget_ratio, 0.0, 10.0)
        self.max_bid = check_range("max_bid", max_bid, 1e-9, np.inf)
        self.ctr_logit_mean = float(ctr_logit_mean)
        self.ctr_logit_std = check_range("ctr_logit_std", ctr_logit_std, 0.0, 10.0)
        self.price_log_mean = float(price_log_mean)
        self.price_log_std = check_range("price_log_std", price_log_std, 0.0, 10.0)
        self.price_ctr_slope = float(price_ctr_slope)
        grid = np.linspace(-8, 8, 4001)  # E[sigmoid(N(mu, sd))] by quadrature, for normalising pctr
        dens = np.exp(-0.5 * grid**2)
        self.ctr_mean = float((dens / (1 + np.exp(-(ctr_logit_mean + ctr_logit_std * grid)))).sum() / dens.sum())
        n, t = self.num_envs, self.n_requests
        self.pctr = np.zeros((n, t))
        self.clicks = np.zeros((n, t), dtype=np.int64)
        self.market_price = np.zeros((n, t))
        self.budget = np.zeros(n)
        self.remaining = np.zeros(n)
        self.request = np.zeros(n, dtype=np.int64)
        self.won_clicks = np.zeros(n)
        self.won_pctr = np.zeros(n)
        self.wins = np.zeros(n, dtype=np.int64)
        self._set_spaces(spaces.Box(-np.inf, np.inf, (5,), np.float32), spaces.Box(0.0, 1.0, (1,), np.float32))

    def _reset_rows(self, rows: np.ndarray, options: dict[str, Any] | None) -> None:
        t = self.n_requests
        z = self._normal(rows, 2 * t)
        click_u = self._uniform(rows, t)
        z_ctr, z_price = z[:, :t], z[:, t:]
        self.pctr[rows] = 1.0 / (1.0 + np.exp(-(self.ctr_logit_mean + self.ctr_logit_std * z_ctr)))
        self.clicks[rows] = (click_u < self.pctr[rows]).astype(np.int64)
        self.market_price[rows] = np.exp(self.price_log_mean + self.price_ctr_slope * z_ctr
                                         + self.price_log_std * z_price)
        self.budget[rows] = self.budget_ratio * self.market_price[rows].sum(axis=1)
        self.remaining[rows] = self.budget[rows]
        self.request[rows] = 0
        self.won_clicks[rows] = 0.0
        self.won_pctr[rows] = 0.0
        self.wins[rows] = 0

    def _step_rows(self, rows: np.ndarray, actions: np.ndarray):
        i = self.request[rows]
        bid = actions[:, 0].astype(np.float64) * self.max_bid
        price = self.market_price[rows, i]
        win = (bid >= price) & (price <= self.remaining[rows])
        self.remaining[rows] -= np.where(win, price, 0.0)
        value = self.clicks[rows, i] if self.reward_kind == "click" else self.pctr[rows, i]
        reward = np.where(win, value, 0.0).astype(np.float64)
        self.won_clicks[rows] += np.where(win, self.clicks[rows, i], 0)
        self.won_pctr[rows] += np.where(win, self.pctr[rows, i], 0.0)
        self.wins[rows] += win
        self.request[rows] = i + 1
        terminated = self.request[rows] >= self.n_requests
        return reward, terminated, np.zeros(len(rows), dtype=bool)

    def current_pctr(self) -> np.ndarray:
        """``[num_envs]`` predicted CTR of the request now up for auction (the last one after the end)."""
        i = np.minimum(self.request, self.n_requests - 1)
        return self.pctr[np.arange(self.num_envs), i]

    def pace(self) -> np.ndarray:
        """``[num_envs]`` remaining budget fraction over remaining requests fraction (1 = on schedule)."""
        time_left = np.maximum(1.0 - self.request / self.n_requests, 1.0 / self.n_requests)
        return (self.remaining / np.maximum(self.budget, 1e-12)) / time_left

    def _observe(self) -> np.ndarray:
        p = self.current_pctr()
        logit = (np.log(p / (1 - p)) - self.ctr_logit_mean) / max(self.ctr_logit_std, 1e-6)
        parts = [1.0 - self.request / self.n_requests, self.remaining / np.maximum(self.budget, 1e-12),
                 p / self.ctr_mean, logit, self.pace()]
        return np.stack(parts, axis=1).astype(np.float32)

    def _infos(self) -> dict[str, np.ndarray]:
        return {"clicks": self.won_clicks.copy(), "expected_clicks": self.won_pctr.copy(),
                "spent": self.budget - self.remaining, "wins": self.wins.copy()}


def synthetic_auction_log(n_requests: int, seed: int, **env_kwargs: Any) -> dict[str, np.ndarray]:
    """One campaign's auction log: ``{"pctr", "click", "market_price"}`` arrays ``[n_requests]`` and the budget."""
    env = BiddingVectorEnv(num_envs=1, n_requests=n_requests, **env_kwargs)
    env.reset(seed=seed)
    return {"pctr": env.pctr[0].copy(), "click": env.clicks[0].copy(), "market_price": env.market_price[0].copy(),
            "budget": env.budget.copy()}


def baseline_bids(env: BiddingVectorEnv, name: str, base: np.ndarray | float) -> np.ndarray:
    """``[num_envs, 1]`` actions of ``constant``, ``linear`` or ``paced_linear`` bidding with base bid ``base``."""
    base = np.broadcast_to(np.asarray(base, dtype=np.float64), (env.num_envs,))
    if name == "constant":
        bid = base
    elif name == "linear":
        bid = base * env.current_pctr() / env.ctr_mean
    elif name == "paced_linear":
        bid = base * env.current_pctr() / env.ctr_mean * np.clip(env.pace(), 0.0, 4.0)
    else:
        raise ValueError(f"unknown baseline {name!r}; choose constant, linear or paced_linear")
    return np.clip(bid / env.max_bid, 0.0, 1.0)[:, None]


def evaluate_bids(name: str, bases: np.ndarray, episodes: int, seed: int, **env_kwargs: Any) -> np.ndarray:
    """Mean expected clicks (sum of won pCTRs) per campaign ``[len(bases)]``, one per base bid, in one batch."""
    env = BiddingVectorEnv(num_envs=len(bases) * episodes, **env_kwargs)
    env.reset(seed=seed)
    base = np.repeat(np.asarray(bases, dtype=np.float64), episodes)
    rows = np.arange(env.num_envs)
    for _ in range(env.n_requests):
        env._step_rows(rows, baseline_bids(env, name, base))
    return env.won_pctr.reshape(len(bases), episodes).mean(axis=1)


def tune_baseline(name: str, episodes: int = 32, seed: int = 0, grid: int = 40, **env_kwargs: Any) -> dict:
    """Grid-search the base bid of a baseline; returns ``{"base", "clicks"}`` on the tuning seeds."""
    max_bid = env_kwargs.get("max_bid", 300.0)
    bases = np.linspace(max_bid / grid, max_bid, grid)
    clicks = evaluate_bids(name, bases, episodes, seed, **env_kwargs)
    best = int(np.argmax(clicks))
    return {"base": float(bases[best]), "clicks": float(clicks[best])}


def make_single(**kwargs: Any) -> SingleEnv:
    """The single-env form (entry point of ``gymnasium.make("policyopt/Bidding-v0")``)."""
    return SingleEnv(BiddingVectorEnv, **kwargs)
