"""Shared checks for every native vector env: agreement with SyncVectorEnv, determinism, checkpoints."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces


def sample_actions(space: spaces.Space, n: int, rng: np.random.Generator, mask: np.ndarray | None):
    """``[n, ...]`` actions: uniform over the mask for Discrete, uniform in the box for Box."""
    if isinstance(space, spaces.Discrete):
        if mask is None:
            mask = np.ones((n, int(space.n)), dtype=bool)
        return (rng.random(mask.shape) * mask).argmax(axis=1) + int(space.start)
    if isinstance(space, spaces.MultiBinary):
        return (rng.random((n, *space.shape)) < 0.5).astype(np.int8)
    if isinstance(space, spaces.Box):
        low = np.where(np.isfinite(space.low), space.low, -1.0)
        high = np.where(np.isfinite(space.high), space.high, 1.0)
        return (low + rng.random((n, *space.shape)) * (high - low)).astype(space.dtype)
    raise TypeError(space)


def assert_tree_equal(a: Any, b: Any, path: str = "") -> None:
    """Exact equality of nested dicts / arrays / object arrays / scalars, naming the first difference."""
    if isinstance(a, dict):
        assert isinstance(b, dict), f"{path}: dict vs {type(b)}"
        assert set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_tree_equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list)) and len(a) == len(b), f"{path}: sequence length"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_tree_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray) and a.dtype == object:
        assert isinstance(b, np.ndarray) and b.shape == a.shape, f"{path}: object array shape"
        for i, (x, y) in enumerate(zip(a, b)):
            assert (x is None) == (y is None), f"{path}[{i}]: None mismatch"
            if x is not None:
                assert_tree_equal(x, y, f"{path}[{i}]")
    else:
        a_arr, b_arr = np.asarray(a), np.asarray(b)
        assert a_arr.shape == b_arr.shape, f"{path}: shape {a_arr.shape} != {b_arr.shape}"
        assert a_arr.dtype == b_arr.dtype, f"{path}: dtype {a_arr.dtype} != {b_arr.dtype}"
        assert np.array_equal(a_arr, b_arr, equal_nan=a_arr.dtype.kind == "f"), f"{path}: values differ"


def make_pair(env_id: str, n: int, mode: str, kwargs: dict[str, Any]):
    native = gymnasium.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point",
                                autoreset_mode=mode, **kwargs)
    enum = native.metadata["autoreset_mode"]
    sync = gymnasium.make_vec(env_id, num_envs=n, vectorization_mode="sync",
                              vector_kwargs={"autoreset_mode": enum}, **kwargs)
    return native, sync


def assert_matches_sync(env_id: str, n: int, steps: int, seed: int, mode: str = "next_step",
                        kwargs: dict[str, Any] | None = None) -> int:
    """Step the native batch and ``SyncVectorEnv`` of single envs with the same seeds and actions.

    Returns the number of episode ends seen (so callers can assert autoreset was exercised).
    """
    native, sync = make_pair(env_id, n, mode, kwargs or {})
    rng = np.random.default_rng(seed)
    out_n, out_s = native.reset(seed=seed), sync.reset(seed=seed)
    assert_tree_equal(out_n, out_s, "reset")
    ends = 0
    for t in range(steps):
        mask = out_n[-1].get("action_mask")
        actions = sample_actions(native.single_action_space, n, rng, mask)
        out_n, out_s = native.step(actions), sync.step(actions)
        assert_tree_equal(out_n, out_s, f"step{t}")
        ends += int(np.sum(out_n[2] | out_n[3]))
    native.close()
    sync.close()
    return ends


def assert_resume_exact(env_id: str, n: int, steps: int, seed: int, kwargs: dict[str, Any] | None = None):
    """save -> continue == restore (into a fresh env) -> continue, bitwise."""
    def make():
        return gymnasium.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **(kwargs or {}))

    env, rng = make(), np.random.default_rng(seed)
    _, info = env.reset(seed=seed)
    for _ in range(steps):
        _, _, _, _, info = env.step(sample_actions(env.single_action_space, n, rng, info.get("action_mask")))
    state, rng_state, info_saved = env.state_dict(), rng.bit_generator.state, info
    first = []
    for _ in range(steps):
        out = env.step(sample_actions(env.single_action_space, n, rng, info.get("action_mask")))
        info = out[4]
        first.append(out)
    other = make()
    other.load_state_dict(state)
    rng.bit_generator.state = rng_state
    info = info_saved
    for t in range(steps):
        out = other.step(sample_actions(other.single_action_space, n, rng, info.get("action_mask")))
        info = out[4]
        assert_tree_equal(out, first[t], f"resumed step {t}")
