"""Env state: a snapshot restored into a freshly built env (after a checkpoint round trip) continues
bitwise, including episode ends, autoreset and the action space's sampling RNG."""

from __future__ import annotations

import dataclasses

import gymnasium
import numpy as np
import pytest
from gymnasium.vector import AsyncVectorEnv

from policyopt.runtime.checkpoint import load_checkpoint, save_checkpoint
from policyopt.runtime.envstate import EnvStateError, get_env_state, set_env_state

MAX_STEPS = 37  # short episodes, so truncations (and autoresets) happen inside the 140 steps


def _make(env_id: str, mode: str, num_envs: int = 4):
    if mode == "vector_entry_point":
        return gymnasium.make_vec(env_id, num_envs, vectorization_mode=mode, max_episode_steps=MAX_STEPS)
    spec = dataclasses.replace(gymnasium.spec(env_id), max_episode_steps=MAX_STEPS)
    env = gymnasium.make_vec(spec, num_envs, vectorization_mode="sync")
    if mode == "sync+wrappers":
        env = gymnasium.wrappers.vector.RecordEpisodeStatistics(env, buffer_length=5)
        env = gymnasium.wrappers.vector.NormalizeObservation(env)
    return env


def _rollout(env, n: int) -> list:
    out = []
    for _ in range(n):
        action = env.action_space.sample()
        obs, reward, term, trunc, info = env.step(action)
        info.get("episode", {}).pop("t", None)  # RecordEpisodeStatistics' wall-clock time
        out.append((action, obs, reward, term, trunc, info))
    return out


def _assert_bitwise(a, b, path="x"):
    assert type(a) is type(b), f"{path}: {type(a)} != {type(b)}"
    if isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b), path
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), path
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            _assert_bitwise(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_bitwise(x, y, f"{path}[{i}]")
    else:
        assert a == b or (a != a and b != b), path


CASES = [
    ("CartPole-v1", "sync"), ("CartPole-v1", "vector_entry_point"), ("CartPole-v1", "sync+wrappers"),
    ("Pendulum-v1", "sync"), ("Acrobot-v1", "sync"), ("MountainCarContinuous-v0", "sync"),
]


@pytest.mark.parametrize("env_id,mode", CASES)
def test_restored_env_continues_bitwise(tmp_path, env_id, mode):
    env = _make(env_id, mode)
    env.reset(seed=11)
    env.action_space.seed(12)
    _rollout(env, 60)
    snapshot = get_env_state(env)
    expected = _rollout(env, 80)
    ends = sum(int(np.sum(term | trunc)) for _, _, _, term, trunc, _ in expected)
    assert ends >= 2, "the test must cross episode boundaries"

    save_checkpoint(tmp_path, 60, {"env": snapshot})
    tree, _ = load_checkpoint(tmp_path)
    fresh = _make(env_id, mode)  # never reset: everything comes from the snapshot
    set_env_state(fresh, tree["env"])
    _assert_bitwise(expected, _rollout(fresh, 80))

    set_env_state(env, tree["env"])  # also into an env that has moved on
    _assert_bitwise(expected, _rollout(env, 80))


def test_snapshot_is_independent_of_later_steps():
    env = _make("CartPole-v1", "sync")
    env.reset(seed=0)
    snapshot = get_env_state(env)
    before = get_env_state(env)
    _rollout(env, 5)
    fresh = _make("CartPole-v1", "sync")
    set_env_state(fresh, snapshot)
    _assert_bitwise(get_env_state(fresh)["root"]["attrs"]["_observations"], before["root"]["attrs"]["_observations"])


def test_aliasing_is_kept():
    env = _make("CartPole-v1", "sync")
    env.reset(seed=0)
    fresh = _make("CartPole-v1", "sync")
    set_env_state(fresh, get_env_state(env))
    assert fresh.single_action_space is fresh.envs[0].action_space


def test_unknown_attribute_is_named():
    env = _make("CartPole-v1", "sync", num_envs=2)
    env.envs[1].unwrapped.mystery = object()
    path = r"env\.envs\[1\]\.env\.env\.env\.mystery"
    with pytest.raises(EnvStateError, match=path + r": cannot capture a builtins\.object"):
        get_env_state(env)


def test_async_vector_env_is_refused():
    fake = AsyncVectorEnv.__new__(AsyncVectorEnv)  # no subprocesses needed to check the refusal
    with pytest.raises(EnvStateError, match="AsyncVectorEnv .* subprocesses"):
        get_env_state(fake)
    tree = get_env_state(_make("CartPole-v1", "sync", num_envs=1))
    with pytest.raises(EnvStateError, match="AsyncVectorEnv"):
        set_env_state(fake, tree)


def test_mismatched_env_is_refused():
    tree = get_env_state(_make("CartPole-v1", "sync", num_envs=1))
    with pytest.raises(EnvStateError, match=r"env\.envs\[0\]\.env\.env\.env: the saved env has a .*CartPoleEnv"):
        set_env_state(_make("Pendulum-v1", "sync", num_envs=1), tree)
    with pytest.raises(EnvStateError, match="not an env state tree"):
        set_env_state(_make("CartPole-v1", "sync", num_envs=1), {"root": {}})


class _CounterEnv(gymnasium.vector.VectorEnv):
    """A vector env with its own state_dict: the walker must use it (and still restore space RNGs)."""

    def __init__(self, num_envs: int = 3):
        self.num_envs = num_envs
        self.single_action_space = gymnasium.spaces.Discrete(5)
        self.action_space = gymnasium.spaces.MultiDiscrete([5] * num_envs)
        self.single_observation_space = gymnasium.spaces.Box(0, np.inf, (1,), np.float32)
        self.observation_space = gymnasium.spaces.Box(0, np.inf, (num_envs, 1), np.float32)
        self.total = np.zeros((num_envs, 1), np.float32)
        self.opaque = object()  # not capturable generically: proves state_dict is used
        self.loads = 0

    def step(self, actions):
        self.total += np.asarray(actions, np.float32)[:, None]
        zeros = np.zeros(self.num_envs, bool)
        return self.total.copy(), self.total[:, 0].astype(np.float64), zeros, zeros, {}

    def state_dict(self):
        return {"total": self.total}

    def load_state_dict(self, state):
        self.total = state["total"].copy()
        self.loads += 1


def test_state_dict_objects_use_their_own_state_dict(tmp_path):
    env = _CounterEnv()
    env.action_space.seed(3)
    _rollout(env, 4)
    snapshot = get_env_state(env)
    expected = _rollout(env, 6)
    save_checkpoint(tmp_path, 0, snapshot)
    fresh = _CounterEnv()
    set_env_state(fresh, load_checkpoint(tmp_path)[0])
    assert fresh.loads == 1
    _assert_bitwise(expected, _rollout(fresh, 6))
