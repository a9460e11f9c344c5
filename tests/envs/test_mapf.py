"""Lifelong MAPF: PettingZoo API, conflict rules, observation windows, new goals, planner, vector adapter."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from policyopt.envs import InvalidActionError
from policyopt.envs.mapf import LifelongMAPFEnv, MAPFAgentsVectorEnv, resolve_moves, shortest_path_actions


def test_pettingzoo_parallel_api_and_seeding():
    parallel_api_test(LifelongMAPFEnv(n_agents=4, size=8, horizon=40), num_cycles=100)
    parallel_seed_test(lambda: LifelongMAPFEnv(n_agents=4, size=8, horizon=40))


def test_conflict_resolution_rules():
    pos = np.array([[0, 0], [0, 2], [2, 2], [3, 2], [5, 5], [5, 6]])
    prop = np.array([[0, 1], [0, 1],  # vertex conflict: both stay
                     [3, 2], [4, 2],  # follow the leader: both move
                     [5, 6], [5, 5]])  # swap: both stay
    out = resolve_moves(pos, prop, size=8)
    assert out.tolist() == [[0, 0], [0, 2], [3, 2], [4, 2], [5, 5], [5, 6]]
    # moving into the cell of an agent that stays (because it is blocked itself) cascades
    pos = np.array([[1, 0], [1, 1], [1, 2], [0, 2]])
    prop = np.array([[1, 1], [1, 2], [0, 2], [0, 2]])  # agent 3 stays, so 2, then 1, then 0 must stay
    assert resolve_moves(pos, prop, size=4).tolist() == pos.tolist()


def test_observation_window_matches_a_loop():
    env = LifelongMAPFEnv(n_agents=5, size=9, view_radius=2)
    env.reset(seed=3)
    obs = env.observation_array()
    r = 2
    for i in range(5):
        y, x = env.position[i]
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                cy, cx = y + dy, x + dx
                k = (dy + r) * 5 + (dx + r)
                inside = 0 <= cy < 9 and 0 <= cx < 9
                assert obs[i, k] == (0.0 if inside and env.free[cy, cx] else 1.0)
                other = inside and any((env.position[j] == [cy, cx]).all() for j in range(5) if j != i)
                assert obs[i, 25 + k] == float(other)
                assert obs[i, 50 + k] == float(inside and (env.goal[i] == [cy, cx]).all())
        assert np.allclose(obs[i, 75:], (env.goal[i] - env.position[i]) / 9)


def test_reaching_goal_rewards_and_draws_new_goal():
    env = LifelongMAPFEnv(n_agents=2, size=6, obstacle_density=0.0)
    env.reset(seed=0)
    env.position[:] = [[2, 2], [5, 5]]
    env.goal[:] = [[2, 3], [0, 0]]
    _, rewards, _, _, infos = env.step({"agent_0": 4, "agent_1": 0})  # agent 0 moves right onto its goal
    assert rewards == {"agent_0": 1.0, "agent_1": 0.0} and infos["agent_0"]["goals_reached"] == 1
    assert not np.array_equal(env.goal[0], [2, 3]) and env.free[tuple(env.goal[0])]
    with pytest.raises(InvalidActionError, match="no action"):
        env.step({"agent_0": 1})
    with pytest.raises(InvalidActionError, match="integers"):
        env.step({"agent_0": 7, "agent_1": 0})


def test_planner_beats_random_and_deadlocks_without_noise():
    def throughput(policy, seeds=range(4)):
        out = []
        for s in seeds:
            env, rng = LifelongMAPFEnv(), np.random.default_rng(s)
            env.reset(seed=s)
            while env.agents:
                a = policy(env, rng)
                env.step({f"agent_{i}": int(a[i]) for i in range(env.n_agents)})
            out.append(env.throughput)
        return float(np.mean(out))

    planner = throughput(lambda env, rng: shortest_path_actions(env, rng, 0.2))
    rand = throughput(lambda env, rng: rng.integers(0, 5, env.n_agents))
    assert planner > 0.3 and planner > 10 * rand


def test_agents_as_vector_env_adapter():
    env = MAPFAgentsVectorEnv(num_envs=4, size=8, horizon=5)
    obs, info = env.reset(seed=0)
    assert obs.shape == (4, env.single_observation_space.shape[0])
    for _ in range(5):
        obs, r, term, trunc, info = env.step(np.zeros(4, dtype=np.int64))
    assert trunc.all() and not term.any()
    obs, r, term, trunc, info = env.step(np.zeros(4, dtype=np.int64))  # NEXT_STEP autoreset
    assert not trunc.any() and (r == 0).all() and env.world.period == 0


def test_agents_vector_env_resume_is_exact():
    env = MAPFAgentsVectorEnv(num_envs=6, size=10, horizon=30)
    env.reset(seed=2)
    rng = np.random.default_rng(0)
    for _ in range(12):
        env.step(rng.integers(0, 5, 6))
    state, actions = env.state_dict(), rng.integers(0, 5, (40, 6))
    first = [env.step(a) for a in actions]  # crosses the horizon: exercises new goals and the autoreset
    other = MAPFAgentsVectorEnv(num_envs=6, size=10, horizon=30)
    other.load_state_dict(state)
    for t, a in enumerate(actions):
        out = other.step(a)
        for x, y in zip(out, first[t]):
            if isinstance(x, dict):
                assert all(np.array_equal(x[k], y[k]) for k in x)
            else:
                assert np.array_equal(x, y), t


def test_path_hint_marks_moves_along_a_shortest_path():
    env = LifelongMAPFEnv(n_agents=3, size=10, path_hint=True)
    env.reset(seed=5)
    obs = env.observation_array()
    assert obs.shape == (3, env.observation_space("agent_0").shape[0]) and obs.shape[1] == 3 * 25 + 2 + 5
    hint = obs[:, -5:]
    for i in range(3):
        d = env.distance[:, env.goal[i, 0] * 10 + env.goal[i, 1]]
        here = d[env.position[i, 0] * 10 + env.position[i, 1]]
        for k, (dy, dx) in enumerate([(-1, 0), (1, 0), (0, -1), (0, 1)], start=1):
            y, x = env.position[i] + [dy, dx]
            good = 0 <= y < 10 and 0 <= x < 10 and env.free[y, x] and d[y * 10 + x] == here - 1
            assert hint[i, k] == float(good)
        assert hint[i, 1:].any()  # the goal is reachable and not here
    parallel_api_test(LifelongMAPFEnv(n_agents=3, size=8, horizon=30, path_hint=True), num_cycles=50)
