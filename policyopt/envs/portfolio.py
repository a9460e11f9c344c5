"""Portfolio allocation: long-only weights over ``n_assets`` and cash, transaction costs, DSR reward.

Serves deep-RL portfolio management papers (Jiang, Xu & Liang, "A deep RL framework for the financial
portfolio management problem", 2017) with the differential Sharpe ratio of Moody & Saffell ("Learning
to trade via direct reinforcement", IEEE TNN 2001), and ESG-regulated allocation (the ``esg`` variant,
``policyopt/PortfolioESG-v0``: a regulator grants or taxes wealth in proportion to the portfolio's ESG
score relative to a reference).

- **Prices**: a seeded regime-switching geometric Brownian motion (two regimes, bull/bear, common to
  all assets, switching with probability ``switch_prob`` per period; asset ``k`` has drift and
  volatility scaled by ``0.5 + k / (n_assets - 1)``; a market factor correlates the shocks with
  ``correlation``), drawn per episode from the copy's stream; or a user CSV of prices (one column per
  asset, a header row; non-numeric first column is dropped), from which each episode takes a random
  window. ``log_returns[t]`` is the log return realised *during* period ``t``.
- **Action**: ``Box(0, 1, (n_assets + 1,))``: nonnegative scores normalised to weights (last = cash);
  all-zero means all cash. Out-of-bound values are clipped.
- **Transition**: paying ``transaction_cost * sum|w - w_drifted|``, then period ``window + t`` returns
  are realised; weights drift with prices. Cash earns 0.
- **Reward**: ``"dsr"`` (default): differential Sharpe ratio ``D_t = (B ΔA - A ΔB / 2) / (B - A^2)^{3/2}``
  of the log return with moving moments ``A, B`` (rate ``dsr_eta``; ``A_0 = 0, B_0 = dsr_init_var``),
  or ``"log_return"``: ``log(wealth_t / wealth_{t-1})``.
- **Observation** (float32): the last ``window`` log returns of every asset (times ``obs_return_scale``;
  only periods *before* the decision: no look-ahead), current drifted weights, ``t / horizon`` and, in
  the ESG variant, the ESG scores.
- **Termination**: none; ``truncated`` after ``horizon`` periods. ``info`` has ``wealth``,
  ``log_return`` and ``turnover``.
- **Baselines** (:func:`baseline_actions`): equal weight (rebalanced), buy-and-hold, mean-variance
  (Markowitz 1952; long-only, estimated on the observed window, solved by projected gradient).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from policyopt.envs.core import NativeVectorEnv, SingleEnv, check_positive_int, check_range


def load_price_csv(path: str | Path) -> np.ndarray:
    """Prices ``[time, n_assets]`` from a CSV with a header row; a non-numeric first column is dropped."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
    rows = [ln.split(",") for ln in lines[1:]]
    try:
        float(rows[0][0])
        start = 0
    except ValueError:
        start = 1
    prices = np.asarray([[float(x) for x in r[start:]] for r in rows], dtype=np.float64)
    if prices.ndim != 2 or prices.shape[0] < 3 or (prices <= 0).any():
        raise ValueError(f"{path}: need >= 3 rows of positive prices, one column per asset")
    return prices


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row of ``v [n, d]`` onto the probability simplex (Duchi et al. 2008)."""
    d = v.shape[1]
    u = -np.sort(-v, axis=1)
    css = np.cumsum(u, axis=1) - 1.0
    ind = np.arange(1, d + 1)
    rho = (u - css / ind > 0).sum(axis=1)
    theta = css[np.arange(len(v)), rho - 1] / rho
    return np.maximum(v - theta[:, None], 0.0)


class PortfolioVectorEnv(NativeVectorEnv):
    """``num_envs`` portfolios (see the module docstring)."""

    state_fields = ("log_returns", "weights", "wealth", "dsr_a", "dsr_b", "period", "last_log_return",
                    "last_turnover")

    def __init__(self, num_envs: int = 1, n_assets: int = 4, horizon: int = 128, window: int = 16,
                 transaction_cost: float = 1e-3, reward: str = "dsr", dsr_eta: float = 0.05,
                 dsr_init_var: float = 1e-4, drift: tuple[float, float] = (0.15, -0.10),
                 volatility: tuple[float, float] = (0.15, 0.30), switch_prob: float = 0.02,
                 correlation: float = 0.3, dt: float = 1.0 / 252.0, prices_csv: str | None = None,
                 esg: bool = False, esg_scores: tuple[float, ...] | None = None, esg_rate: float = 2e-4,
                 esg_reference: float = 0.5, obs_return_scale: float = 50.0,
                 autoreset_mode: str = "next_step") -> None:
        super().__init__(num_envs, autoreset_mode)
        if reward not in ("dsr", "log_return"):
            raise ValueError(f"reward must be 'dsr' or 'log_return', got {reward!r}")
        self.reward_kind = reward
        self.prices = None if prices_csv is None else load_price_csv(prices_csv)
        self.n_assets = check_positive_int("n_assets", n_assets if self.prices is None else self.prices.shape[1])
        self.horizon = check_positive_int("horizon", horizon)
        self.window = check_positive_int("window", window, 2)
        if self.prices is not None and self.prices.shape[0] - 1 < self.horizon + self.window:
            raise ValueError(f"prices_csv has {self.prices.shape[0]} rows; need > horizon + window = "
                             f"{self.horizon + self.window}")
        self.transaction_cost = check_range("transaction_cost", transaction_cost, 0.0, 0.5)
        self.dsr_eta = check_range("dsr_eta", dsr_eta, 1e-6, 1.0)
        self.dsr_init_var = check_range("dsr_init_var", dsr_init_var, 1e-12, np.inf)
        self.switch_prob = check_range("switch_prob", switch_prob, 0.0, 1.0)
        self.correlation = check_range("correlation", correlation, 0.0, 1.0)
        self.dt = check_range("dt", dt, 1e-9, 1.0)
        k = self.n_assets
        scale = 0.5 + np.arange(k) / max(k - 1, 1)
        self.drift = np.asarray(drift, dtype=np.float64)[:, None] * scale[None, :]  # [2 regimes, k]
        self.volatility = np.asarray(volatility, dtype=np.float64)[:, None] * scale[None, :]
        if self.drift.shape != (2, k) or (self.volatility < 0).any():
            raise ValueError("drift and volatility must be (bull, bear) pairs; volatility >= 0")
        self.esg = bool(esg)
        default_esg = np.linspace(0.9, 0.1, k)
        self.esg_scores = np.asarray(esg_scores if esg_scores is not None else default_esg, dtype=np.float64)
        if self.esg_scores.shape != (k,):
            raise ValueError(f"esg_scores must have {k} entries, got {self.esg_scores.shape}")
        self.esg_rate = check_range("esg_rate", esg_rate, 0.0, 0.1) if self.esg else 0.0
        self.esg_reference = float(esg_reference)
        self.obs_return_scale = float(obs_return_scale)
        n, length = self.num_envs, self.horizon + self.window
        self.log_returns = np.zeros((n, length, k))
        self.weights = np.zeros((n, k + 1))
        self.wealth = np.ones(n)
        self.dsr_a = np.zeros(n)
        self.dsr_b = np.zeros(n)
        self.period = np.zeros(n, dtype=np.int64)
        self.last_log_return = np.zeros(n)
        self.last_turnover = np.zeros(n)
        obs_dim = self.window * k + k + 2 + (k if self.esg else 0)
        self._set_spaces(spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
                         spaces.Box(0.0, 1.0, (k + 1,), np.float32))

    # ------------------------------------------------------------------ price paths
    def _synthetic_paths(self, rows: np.ndarray) -> np.ndarray:
        length, k = self.horizon + self.window, self.n_assets
        u = self._uniform(rows, length + 1)
        switches = (u[:, 1:] < self.switch_prob).astype(np.int64)
        regime = (np.cumsum(switches, axis=1) + (u[:, :1] < 0.5)) % 2  # [r, length]
        z = self._normal(rows, length * (k + 1)).reshape(len(rows), length, k + 1)
        rho = self.correlation
        shock = np.sqrt(rho) * z[..., :1] + np.sqrt(1.0 - rho) * z[..., 1:]
        mu, sigma = self.drift[regime], self.volatility[regime]  # [r, length, k]
        return (mu - 0.5 * sigma**2) * self.dt + sigma * np.sqrt(self.dt) * shock

    def _csv_paths(self, rows: np.ndarray) -> np.ndarray:
        logret = np.diff(np.log(self.prices), axis=0)
        length = self.horizon + self.window
        n_starts = logret.shape[0] - length + 1
        start = np.floor(self._uniform(rows, 1)[:, 0] * n_starts).astype(np.int64)
        return logret[start[:, None] + np.arange(length)[None, :]]

    # ------------------------------------------------------------------ dynamics
    def _reset_rows(self, rows: np.ndarray, options: dict[str, Any] | None) -> None:
        paths = self._synthetic_paths(rows) if self.prices is None else self._csv_paths(rows)
        self.log_returns[rows] = paths
        self.weights[rows] = 0.0
        self.weights[rows, -1] = 1.0
        self.wealth[rows] = 1.0
        self.dsr_a[rows] = 0.0
        self.dsr_b[rows] = self.dsr_init_var
        self.period[rows] = 0
        self.last_log_return[rows] = 0.0
        self.last_turnover[rows] = 0.0

    def target_weights(self, actions: np.ndarray) -> np.ndarray:
        """Weights ``[n, n_assets + 1]`` from actions (normalised scores; all-zero -> all cash)."""
        a = np.asarray(actions, dtype=np.float64)
        total = a.sum(axis=1, keepdims=True)
        cash = np.zeros_like(a)
        cash[:, -1] = 1.0
        return np.where(total > 0, a / np.where(total > 0, total, 1.0), cash)

    def _step_rows(self, rows: np.ndarray, actions: np.ndarray):
        w = self.target_weights(actions)
        turnover = np.abs(w - self.weights[rows]).sum(axis=1)
        t = self.period[rows]
        gross = np.exp(self.log_returns[rows, self.window + t])  # [r, k]: realised this period
        gross_all = np.concatenate([gross, np.ones((len(rows), 1))], axis=1)
        growth_assets = (w * gross_all).sum(axis=1)
        growth = (1.0 - self.transaction_cost * turnover) * growth_assets
        if self.esg:
            growth *= 1.0 + self.esg_rate * (w[:, :-1] * (self.esg_scores - self.esg_reference)).sum(axis=1)
        r = np.log(growth)
        self.weights[rows] = w * gross_all / growth_assets[:, None]
        self.wealth[rows] *= growth
        a_prev, b_prev = self.dsr_a[rows], self.dsr_b[rows]
        d_a, d_b = r - a_prev, r**2 - b_prev
        var = b_prev - a_prev**2
        safe = var > 1e-12
        dsr = np.where(safe, (b_prev * d_a - 0.5 * a_prev * d_b) / np.where(safe, var, 1.0) ** 1.5, 0.0)
        self.dsr_a[rows] = a_prev + self.dsr_eta * d_a
        self.dsr_b[rows] = b_prev + self.dsr_eta * d_b
        self.period[rows] = t + 1
        self.last_log_return[rows], self.last_turnover[rows] = r, turnover
        reward = dsr if self.reward_kind == "dsr" else r
        return reward, np.zeros(len(rows), dtype=bool), self.period[rows] >= self.horizon

    def observed_returns(self) -> np.ndarray:
        """``[num_envs, window, n_assets]`` log returns of the ``window`` periods before the decision."""
        windows = np.lib.stride_tricks.sliding_window_view(self.log_returns, self.window, axis=1)
        return windows[np.arange(self.num_envs), self.period].transpose(0, 2, 1)  # [n, k, W] -> [n, W, k]

    def _observe(self) -> np.ndarray:
        n = self.num_envs
        parts = [self.observed_returns().reshape(n, -1) * self.obs_return_scale, self.weights,
                 (self.period / self.horizon)[:, None]]
        if self.esg:
            parts.append(np.broadcast_to(self.esg_scores, (n, self.n_assets)))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _infos(self) -> dict[str, np.ndarray]:
        return {"wealth": self.wealth.copy(), "log_return": self.last_log_return.copy(),
                "turnover": self.last_turnover.copy()}


def baseline_actions(env: PortfolioVectorEnv, name: str, risk_aversion: float = 5.0) -> np.ndarray:
    """``[num_envs, n_assets + 1]`` actions of a baseline: ``equal_weight``, ``buy_and_hold``, ``mean_variance``."""
    n, k = env.num_envs, env.n_assets
    equal = np.concatenate([np.full((n, k), 1.0 / k), np.zeros((n, 1))], axis=1)
    if name == "equal_weight":
        return equal
    if name == "buy_and_hold":
        return np.where((env.period == 0)[:, None], equal, env.weights)
    if name != "mean_variance":
        raise ValueError(f"unknown baseline {name!r}; choose equal_weight, buy_and_hold or mean_variance")
    r = env.observed_returns()  # [n, window, k]
    mu = np.concatenate([r.mean(axis=1), np.zeros((n, 1))], axis=1)
    centred = r - r.mean(axis=1, keepdims=True)
    cov = np.zeros((n, k + 1, k + 1))
    cov[:, :k, :k] = np.einsum("nti,ntj->nij", centred, centred) / (env.window - 1) + 1e-6 * np.eye(k)
    w = equal.copy()
    step = 1.0 / (risk_aversion * np.linalg.norm(cov, axis=(1, 2)) + 1e-3)[:, None]
    for _ in range(100):
        grad = mu - risk_aversion * np.einsum("nij,nj->ni", cov, w)
        w = project_simplex(w + step * grad)
    return w


def make_single(**kwargs: Any) -> SingleEnv:
    """The single-env form (entry point of ``gymnasium.make("policyopt/Portfolio-v0")``)."""
    return SingleEnv(PortfolioVectorEnv, **kwargs)


def make_single_esg(**kwargs: Any) -> SingleEnv:
    """The ESG-regulated single env (``gymnasium.make("policyopt/PortfolioESG-v0")``)."""
    return SingleEnv(PortfolioVectorEnv, esg=True, **kwargs)


def make_vector_esg(num_envs: int = 1, **kwargs: Any) -> PortfolioVectorEnv:
    """The ESG-regulated native batch (vector entry point of ``policyopt/PortfolioESG-v0``)."""
    return PortfolioVectorEnv(num_envs=num_envs, esg=True, **kwargs)
