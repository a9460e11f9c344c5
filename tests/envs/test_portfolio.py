"""Portfolio: no look-ahead, accounting identities, DSR, CSV data, ESG variant, baselines."""

from __future__ import annotations

import numpy as np
import pytest

from policyopt.envs.portfolio import PortfolioVectorEnv, baseline_actions, project_simplex


def test_no_look_ahead_observation_and_reward_ignore_the_future():
    env = PortfolioVectorEnv(num_envs=8, horizon=20, window=5, reward="log_return")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for t in range(20):
        obs = env._observe()
        decision_idx = env.window + t  # the period the next action is exposed to
        state = env.state_dict()
        env.log_returns[:, decision_idx:] = rng.normal(0, 1, env.log_returns[:, decision_idx:].shape)
        assert np.array_equal(env._observe(), obs), f"observation at t={t} depends on future returns"
        env.load_state_dict(state)
        actions = rng.random((8, env.n_assets + 1)).astype(np.float32)
        # the reward of period t may depend on period t's return but on nothing later
        env.log_returns[:, decision_idx + 1:] = rng.normal(0, 1, env.log_returns[:, decision_idx + 1:].shape)
        _, r_perturbed, *_ = env.step(actions)
        env.load_state_dict(state)
        _, r, *_ = env.step(actions)
        assert np.array_equal(r, r_perturbed)
    # and the observation does contain the most recent realised return
    assert np.allclose(env._observe()[:, (env.window - 1) * env.n_assets: env.window * env.n_assets],
                       env.log_returns[:, env.window + 19 - 0] * env.obs_return_scale, atol=1e-5)


def test_wealth_accounting_with_costs():
    env = PortfolioVectorEnv(num_envs=1, n_assets=2, horizon=3, window=2, transaction_cost=0.01,
                             reward="log_return")
    env.reset(seed=0)
    env.log_returns[0, 2] = np.log([1.10, 0.90])
    _, r, *_ = env.step(np.array([[1.0, 1.0, 0.0]], dtype=np.float32))  # 50/50, turnover 2 from all cash
    growth = (1 - 0.01 * 2.0) * (0.5 * 1.10 + 0.5 * 0.90)
    assert np.isclose(r[0], np.log(growth)) and np.isclose(env.wealth[0], growth)
    assert np.allclose(env.weights[0], [0.55, 0.45, 0.0])  # drifted with prices
    env.log_returns[0, 3] = 0.0
    _, r, *_ = env.step(env.weights.astype(np.float32))  # hold: no turnover, no cost
    assert np.isclose(r[0], 0.0, atol=1e-7)


def test_differential_sharpe_ratio_formula():
    env = PortfolioVectorEnv(num_envs=1, n_assets=1, horizon=5, window=2, transaction_cost=0.0,
                             dsr_eta=0.1, dsr_init_var=0.04)
    env.reset(seed=0)
    env.log_returns[0, 2:4, 0] = [0.02, -0.01]
    a, b = 0.0, 0.04
    for t, ret in enumerate([0.02, -0.01]):
        _, d, *_ = env.step(np.array([[1.0, 0.0]], dtype=np.float32))
        expected = (b * (ret - a) - 0.5 * a * (ret**2 - b)) / (b - a**2) ** 1.5
        assert np.isclose(d[0], expected), t
        a, b = a + 0.1 * (ret - a), b + 0.1 * (ret**2 - b)


def test_csv_prices_and_esg_variant(tmp_path):
    prices = np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, (200, 3)), axis=0)) * 100
    lines = ["date,A,B,C"] + [f"d{i}," + ",".join(f"{p:.6f}" for p in row) for i, row in enumerate(prices)]
    path = tmp_path / "prices.csv"
    path.write_text("\n".join(lines))
    env = PortfolioVectorEnv(num_envs=4, prices_csv=str(path), horizon=30, window=5)
    env.reset(seed=0)
    logret = np.diff(np.log(np.round(prices, 6)), axis=0)
    for i in range(4):  # every episode is a contiguous window of the file
        match = [s for s in range(len(logret) - 35 + 1) if np.allclose(logret[s: s + 35], env.log_returns[i])]
        assert match
    esg = PortfolioVectorEnv(num_envs=1, n_assets=2, esg=True, esg_scores=(1.0, 0.0), esg_rate=0.01,
                             transaction_cost=0.0, reward="log_return", horizon=3, window=2)
    esg.reset(seed=0)
    esg.log_returns[0] = 0.0
    _, r_green, *_ = esg.step(np.array([[1.0, 0.0, 0.0]], dtype=np.float32))
    _, r_brown, *_ = esg.step(np.array([[0.0, 1.0, 0.0]], dtype=np.float32))
    assert np.isclose(r_green[0], np.log(1.005)) and np.isclose(r_brown[0], np.log(0.995))
    with pytest.raises(ValueError, match="rows"):
        PortfolioVectorEnv(num_envs=1, prices_csv=str(path), horizon=300)


def test_baselines_behave_as_named():
    env = PortfolioVectorEnv(num_envs=16, horizon=10, window=8)
    env.reset(seed=0)
    rows = np.arange(16)
    env._step_rows(rows, baseline_actions(env, "equal_weight"))
    hold = baseline_actions(env, "buy_and_hold")
    assert np.allclose(hold, env.weights)  # holds the drifted weights: zero turnover
    env._step_rows(rows, hold)
    assert np.allclose(env.last_turnover, 0.0)
    mv = baseline_actions(env, "mean_variance")
    assert np.allclose(mv.sum(axis=1), 1.0) and (mv >= 0).all()
    v = np.array([[0.2, 0.9, -0.5], [1.0, 1.0, 1.0]])
    assert np.allclose(project_simplex(v), [[0.15, 0.85, 0.0], [1 / 3, 1 / 3, 1 / 3]])
