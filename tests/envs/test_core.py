"""The framework itself: counter-based random streams, seeding rules, autoreset metadata and layout."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from scipy import stats

from policyopt.envs.core import counter_uniform, seed_keys
from policyopt.envs.jobshop import JobShopVectorEnv


def test_counter_uniform_is_uniform_and_streams_are_independent():
    keys = seed_keys(np.arange(4))
    u = counter_uniform(keys, np.zeros(4, dtype=np.uint64), 50_000)
    assert u.min() >= 0.0 and u.max() < 1.0
    for row in u:
        assert stats.kstest(row, "uniform").pvalue > 1e-4
    assert abs(np.corrcoef(u[0], u[1])[0, 1]) < 0.02  # neighbouring seeds
    assert abs(np.corrcoef(u[0, :-1], u[0, 1:])[0, 1]) < 0.02  # consecutive draws of one stream


def test_a_copy_draws_the_same_numbers_whatever_its_batch():
    keys = seed_keys(np.array([7, 8, 9]))
    counters = np.array([0, 5, 11], dtype=np.uint64)
    together = counter_uniform(keys, counters, 6)
    for i in range(3):
        alone = counter_uniform(keys[i: i + 1], counters[i: i + 1], 6)
        assert np.array_equal(alone[0], together[i])
    # a later counter continues the same stream
    assert np.array_equal(counter_uniform(keys[:1], np.array([3], np.uint64), 3)[0],
                          counter_uniform(keys[:1], np.array([0], np.uint64), 6)[0, 3:])


def test_normals_are_standard_normal():
    env = JobShopVectorEnv(num_envs=2)
    env.reset(seed=0)
    z = env._normal(np.arange(2), 40_000)
    assert stats.kstest(z.reshape(-1), "norm").pvalue > 1e-4


def test_seeding_rules():
    env = JobShopVectorEnv(num_envs=3)
    env.reset(seed=[5, 6, 7])
    listed = env.durations.copy()
    env.reset(seed=5)
    assert np.array_equal(env.durations, listed)  # int seed s means s, s+1, s+2
    env.reset()  # no seed: the streams continue, new instances
    assert not np.array_equal(env.durations, listed)
    with pytest.raises(ValueError, match="seeds"):
        env.reset(seed=[1, 2])
    with pytest.raises(ValueError, match="2\\*\\*63"):
        env.reset(seed=-1)
    with pytest.raises(ValueError, match="num_envs"):
        JobShopVectorEnv(num_envs=0)


def test_autoreset_metadata_and_same_step_layout():
    with pytest.raises(ValueError, match="autoreset_mode"):
        JobShopVectorEnv(num_envs=2, autoreset_mode="disabled")
    nxt = gymnasium.make_vec("policyopt/JobShop-v0", num_envs=2, vectorization_mode="vector_entry_point")
    assert nxt.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    env = JobShopVectorEnv(num_envs=2, n_jobs=2, n_machines=2, autoreset_mode="same_step")
    assert env.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    _, info = env.reset(seed=0)
    for _ in range(4):
        obs, _, term, _, info = env.step(info["action_mask"].argmax(axis=1))
    assert term.all() and info["_final_obs"].all()
    final = np.stack(info["final_obs"])
    assert np.allclose(final[:, -1], 1.0) and np.allclose(obs[:, -1], 0.0)  # progress: done vs fresh
    assert (info["final_info"]["makespan"] > 0).all() and (info["makespan"] == 0).all()


def test_single_env_terminal_mask_and_unbatched_info():
    env = gymnasium.make("policyopt/JobShop-v0", n_jobs=2, n_machines=2).unwrapped
    _, info = env.reset(seed=0)
    assert info["action_mask"].shape == (2,) and info["action_mask"].dtype == bool
    for _ in range(4):
        _, _, term, _, info = env.step(int(info["action_mask"].argmax()))
    assert term and info["action_mask"].all()  # terminal: any action would be ignored
