"""Path planning: sparse reward, collisions, map construction, controllers."""

from __future__ import annotations

import numpy as np

from policyopt.envs.pathplanning import PathPlanningVectorEnv, baseline_actions


def _run(env, name, steps):
    rows, done = np.arange(env.num_envs), np.zeros(env.num_envs, bool)
    success, length = np.zeros(env.num_envs), np.zeros(env.num_envs)
    for _ in range(steps):
        r, term, trunc = env._step_rows(rows, baseline_actions(env, name))
        success += np.where(done, 0.0, r)
        length += ~done
        done |= term | trunc
    return success, length


def test_start_and_goal_are_free_and_border_controller_always_succeeds():
    env = PathPlanningVectorEnv(num_envs=256)
    env.reset(seed=0)
    rows = np.arange(256)
    assert not env.collides(env.position, rows).any() and not env.collides(env.goal, rows).any()
    success, length = _run(env, "border", 200)
    assert success.min() == 1.0 and length.max() < 200
    env.reset(seed=0)
    straight, _ = _run(env, "straight", 200)
    env.reset(seed=0)
    field, _ = _run(env, "potential_field", 200)
    assert straight.mean() < field.mean() < 1.0


def test_collision_terminates_without_moving_and_reward_is_sparse():
    env = PathPlanningVectorEnv(num_envs=1, n_obstacles=1, collision_penalty=-1.0, max_step=0.04)
    env.reset(seed=0)
    env.position[0] = [0.5, 0.5 - 0.05 - 0.03]
    env.centres[0, 0] = [0.5, 0.5]
    env.radii[0] = 0.05
    _, r, term, trunc, _ = env.step(np.array([[0.0, 1.0]], dtype=np.float32))
    assert r[0] == -1.0 and term[0] and not trunc[0]
    assert np.allclose(env.position[0], [0.5, 0.42])
    env.reset(seed=1)
    _, r, term, _, _ = env.step(np.array([[5.0, 5.0]], dtype=np.float32))  # clipped to [-1, 1], norm 1
    assert r[0] == 0.0 and not term[0]


def test_reaching_goal_pays_one():
    env = PathPlanningVectorEnv(num_envs=1)
    env.reset(seed=0)
    env.position[0] = env.goal[0] - [0.0, 0.06]
    _, r, term, _, info = env.step(np.array([[0.0, 1.0]], dtype=np.float32))
    assert r[0] == 1.0 and term[0] and info["success"][0] == 1


def test_distance_shaping_rewards_progress_and_telescopes():
    env = PathPlanningVectorEnv(num_envs=1, distance_shaping=2.0)
    env.reset(seed=0)
    d0 = np.linalg.norm(env.goal[0] - env.position[0])
    total = 0.0
    for _ in range(3):
        _, r, _, _, _ = env.step(np.array([[1.0, 0.0]], dtype=np.float32))
        total += r[0]
    assert np.isclose(total, 2.0 * (d0 - np.linalg.norm(env.goal[0] - env.position[0])))
