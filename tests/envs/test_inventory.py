"""Lot sizing: post-decision state, capacity handling, demand sampler, costs, the tuned (s, S) baseline."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from policyopt.envs.inventory import LotSizingVectorEnv, evaluate_s_S, s_S_actions, tune_s_S


def test_post_decision_obs_is_the_deterministic_half_of_the_transition():
    env = LotSizingVectorEnv(num_envs=64)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(10):
        actions = rng.random((64, 3)).astype(np.float32)
        expected = env.post_decision_obs(actions)
        inv_before = env.inventory.copy()
        q = env.quantities(actions)
        obs, _, _, _, info = env.step(actions)
        assert np.array_equal(info["post_decision_obs"], expected)
        post = np.minimum(inv_before + q, env.max_inventory)
        assert (env.inventory <= post).all() and (env.inventory >= 0).all()
        assert np.allclose(obs[:, :3], env.inventory / env.max_inventory)


def test_capacity_scales_orders_down():
    env = LotSizingVectorEnv(num_envs=2, capacity=30, max_order=20)
    q = env.quantities(np.array([[1.0, 1.0, 1.0], [0.25, 0.5, 0.0]]))
    assert q.tolist() == [[10, 10, 10], [5, 10, 0]]


def test_demand_is_poisson_and_costs_are_exact():
    n = 4000
    env = LotSizingVectorEnv(num_envs=n, seasonality=0.0, setup_cost=0.0, unit_cost=0.0, holding_cost=0.0,
                             lost_sale_cost=1.0, reward_scale=1.0)
    env.reset(seed=1)
    env.inventory[:] = 0  # nothing in stock, nothing ordered: the cost is exactly the demand
    _, reward, _, _, _ = env.step(np.zeros((n, 3), dtype=np.float32))
    demand = -reward  # summed over the three items
    assert abs(demand.mean() - 18.0) < 4 * np.sqrt(18.0 / n)
    assert abs(demand.var() - 18.0) < 0.1 * 18.0
    env2 = LotSizingVectorEnv(num_envs=3, seasonality=0.0, setup_cost=10.0, unit_cost=2.0, holding_cost=0.5,
                              lost_sale_cost=0.0, reward_scale=1.0, max_inventory=1000)
    env2.reset(seed=0)
    env2.inventory[:] = 500
    _, reward, _, _, _ = env2.step(np.array([[0.5, 0.0, 0.0]] * 3, dtype=np.float32))  # q = 10 for item 0
    assert np.allclose(reward, -(10.0 + 2.0 * 10 + 0.5 * env2.inventory.sum(axis=1)))


def test_horizon_terminates():
    env = gymnasium.make("policyopt/LotSizing-v0", horizon=5).unwrapped
    env.reset(seed=0)
    flags = [env.step(np.zeros(3, dtype=np.float32))[2] for _ in range(5)]
    assert flags == [False] * 4 + [True]


def test_tuned_s_S_beats_simple_policies_on_held_out_seeds():
    tuned = tune_s_S(episodes=16, seed=0, grid=8)
    s, S = tuned["s"][None], tuned["S"][None]
    held_out = evaluate_s_S(s, S, episodes=64, seed=10_000)[0]
    never = evaluate_s_S(np.zeros((1, 3), int), np.zeros((1, 3), int), 64, 10_000)[0]
    always = evaluate_s_S(np.full((1, 3), 10**6), np.full((1, 3), 10**6), 64, 10_000)[0]
    assert held_out > never + 20 and held_out > always + 5
    env = LotSizingVectorEnv(num_envs=1)
    env.reset(seed=0)
    env.inventory[:] = [0, 100, 5]
    a = s_S_actions(env, np.array([[3, 3, 3]]), np.array([[12, 12, 12]]))
    assert np.allclose(a * env.max_order, [[12, 0, 0]])


def test_bad_config_names_the_key():
    with pytest.raises(ValueError, match="demand_mean"):
        LotSizingVectorEnv(num_envs=1, demand_mean=(1.0, -2.0, 3.0))
    with pytest.raises(ValueError, match="horizon"):
        LotSizingVectorEnv(num_envs=1, horizon=0)
