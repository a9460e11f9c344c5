"""The contract every policyopt environment meets (parametrised over all registered ids)."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import policyopt.envs
from policyopt.envs import InvalidActionError
from tests.envs.contract import assert_matches_sync, assert_resume_exact, assert_tree_equal, sample_actions

IDS = policyopt.envs.ENV_IDS
# short episodes so that 60 steps cross several autoresets
SHORT = {
    "policyopt/LotSizing-v0": {"horizon": 12},
    "policyopt/Portfolio-v0": {"horizon": 15, "window": 4},
    "policyopt/PortfolioESG-v0": {"horizon": 15, "window": 4, "reward": "log_return"},
    "policyopt/RestlessBandits-v0": {"horizon": 10, "n_arms": 5, "budget": 2.0},
    "policyopt/Bidding-v0": {"n_requests": 12, "reward": "click"},
    "policyopt/PathPlanning-v0": {"horizon": 15, "max_step": 0.04},
}


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_single_form(env_id):
    env = gymnasium.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # infinite Box bounds are legitimate here
        check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
@pytest.mark.parametrize("env_id", IDS)
def test_native_batch_equals_sync_vector_env(env_id, mode):
    ends = assert_matches_sync(env_id, n=5, steps=60, seed=11, mode=mode, kwargs=SHORT.get(env_id))
    assert ends > 0, "the run must cross episode ends to test autoreset"


@pytest.mark.parametrize("env_id", IDS)
def test_seeded_determinism_and_seed_sensitivity(env_id):
    def rollout(seed):
        env = gymnasium.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point")
        rng = np.random.default_rng(0)
        obs, info = env.reset(seed=seed)
        trace = [obs]
        for _ in range(10):
            obs, rew, *_, info = env.step(sample_actions(env.single_action_space, 3, rng, info.get("action_mask")))
            trace += [obs, rew]
        return trace

    a, b, c = rollout(5), rollout(5), rollout(6)
    assert_tree_equal(a, b)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c)), "different seeds gave identical rollouts"


@pytest.mark.parametrize("env_id", IDS)
def test_checkpoint_resume_is_bitwise(env_id):
    assert_resume_exact(env_id, n=4, steps=15, seed=3, kwargs=SHORT.get(env_id))


@pytest.mark.parametrize("env_id", IDS)
def test_wrong_action_shape_is_an_error(env_id):
    env = gymnasium.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point")
    env.reset(seed=0)
    bad = np.zeros((2, *env.single_action_space.shape), dtype=env.single_action_space.dtype)
    with pytest.raises(InvalidActionError, match="shape"):
        env.step(bad)
    single = gymnasium.make(env_id).unwrapped
    single.reset(seed=0)
    with pytest.raises(InvalidActionError, match="shape"):
        single.step(np.zeros((7, 7)))


@pytest.mark.parametrize("env_id", IDS)
def test_single_env_refuses_step_after_episode_end_and_before_reset(env_id):
    env = gymnasium.make(env_id).unwrapped
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.action_space.sample())
    _, info = env.reset(seed=1)
    rng = np.random.default_rng(1)
    for _ in range(100_000):
        mask = info.get("action_mask")
        action = sample_actions(env.action_space, 1, rng, None if mask is None else mask[None])[0]
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    else:
        pytest.fail("episode did not end")
    with pytest.raises(RuntimeError, match="reset"):
        env.step(action)


@pytest.mark.parametrize("env_id", IDS)
def test_box_actions_nan_is_an_error_and_out_of_bounds_is_clipped(env_id):
    def make():
        env = gymnasium.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point")
        env.reset(seed=0)
        return env

    space = make().single_action_space
    if not isinstance(space, gymnasium.spaces.Box):
        pytest.skip("discrete actions: covered by the range and mask tests")
    env = make()
    nan = np.full((2, *space.shape), np.nan, dtype=np.float32)
    with pytest.raises(InvalidActionError, match="non-finite"):
        env.step(nan)
    far, edge = np.full((2, *space.shape), 1e6, np.float32), np.broadcast_to(space.high, (2, *space.shape))
    a, b = make(), make()
    assert_tree_equal(a.step(far), b.step(edge.astype(np.float32)))


@pytest.mark.parametrize("env_id", IDS)
def test_state_dict_survives_a_checkpoint_file(env_id, tmp_path):
    """The state tree is checkpointable by policyopt.runtime.checkpoint (no pickle; uint64 RNG keys intact)."""
    from policyopt.runtime.checkpoint import load_checkpoint, save_checkpoint

    env = gymnasium.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", **SHORT.get(env_id, {}))
    env.reset(seed=9)
    rng = np.random.default_rng(0)
    info = {}
    for _ in range(5):
        *_, info = env.step(sample_actions(env.single_action_space, 3, rng, info.get("action_mask")))
    save_checkpoint(tmp_path, 5, {"env": env.state_dict()})
    tree, step = load_checkpoint(tmp_path)
    assert step == 5
    other = gymnasium.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", **SHORT.get(env_id, {}))
    other.load_state_dict(tree["env"])
    actions = sample_actions(env.single_action_space, 3, rng, info.get("action_mask"))
    assert_tree_equal(env.step(actions), other.step(actions))
