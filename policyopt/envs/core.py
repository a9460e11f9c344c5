"""Natively vectorised environments: batch-first numpy state for ``N`` copies, no Python loop over copies.

A :class:`NativeVectorEnv` *is* a :class:`gymnasium.vector.VectorEnv`. Its state is a set of numpy
arrays whose leading axis is the copy (``[num_envs, ...]``); a subclass writes four batched hooks

- ``_reset_rows(rows, options)``: start a new episode in the copies ``rows`` (int array),
- ``_step_rows(rows, actions) -> (reward, terminated, truncated)``, each ``[len(rows)]``,
- ``_observe() -> obs [num_envs, ...]`` and ``_infos() -> {key: array [num_envs, ...]}``,

and the base class does seeding, action validation, autoreset, the Gymnasium info layout and exact
checkpointing. The single-env form (:class:`SingleEnv`, what ``gymnasium.make`` returns) is the same
code at ``num_envs=1``, so the native batch agrees *exactly* with ``N`` single envs.

**Randomness.** Every copy owns a counter-based random stream: a 64-bit key derived from its seed
(copy ``i`` of a batch reset with ``seed=s`` gets seed ``s + i``, as ``SyncVectorEnv`` does) and a
counter of the uniforms drawn so far. A draw of ``k`` uniforms for the copies ``rows`` is one
vectorised SplitMix64 hash of ``key + (counter + j) * golden`` (Steele, Lea & Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014), so a copy's numbers never depend on which other copies
share its batch. The whole random state is the two arrays ``(key, counter)``, which
:meth:`NativeVectorEnv.state_dict` returns with everything else: save -> continue equals
restore -> continue bitwise.

**Autoreset.** ``NEXT_STEP`` by default (Gymnasium's default, the one its vector wrappers accept):
after a copy terminates, the next ``step`` ignores that copy's action, resets it and returns reward 0.
``autoreset_mode="same_step"`` resets in the same step and puts ``final_obs``/``final_info`` in
the info, laid out exactly as ``SyncVectorEnv(..., autoreset_mode=SAME_STEP)`` does.

**Invalid actions** raise :class:`InvalidActionError` (a ``ValueError``) naming the copy and the
problem: wrong shape, non-integer or out-of-range discrete action, masked action, NaN. Continuous
actions outside the bounds are clipped (documented per environment). Action masks are in
``info["action_mask"]`` (bool, ``[num_envs, n_actions]``; ``[n_actions]`` in the single form); at a
terminal state every action is marked valid because it is ignored.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

_GOLDEN = np.array([0x9E3779B97F4A7C15], dtype=np.uint64)
_MIX1 = np.array([0xBF58476D1CE4E5B9], dtype=np.uint64)
_MIX2 = np.array([0x94D049BB133111EB], dtype=np.uint64)
_SEED_SALT = np.array([0x5DEECE66D2545F49], dtype=np.uint64)
_MAX_SEED = 2**63


class InvalidActionError(ValueError):
    """An action that the environment cannot execute (wrong shape, out of range, masked, NaN)."""


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser, elementwise on a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def seed_keys(seeds: np.ndarray) -> np.ndarray:
    """Stream keys ``[n]`` (uint64) for integer seeds ``[n]``; distinct seeds give unrelated streams."""
    seeds = np.asarray(seeds, dtype=np.uint64).reshape(-1)
    return _mix64(_mix64(seeds * _GOLDEN + _SEED_SALT))


def counter_uniform(keys: np.ndarray, counters: np.ndarray, k: int) -> np.ndarray:
    """Uniforms in ``[0, 1)`` of shape ``[n, k]``: draws ``counter .. counter + k - 1`` of each stream."""
    offs = np.arange(k, dtype=np.uint64)
    x = keys[:, None] + (counters[:, None] + offs[None, :]) * _GOLDEN
    return (_mix64(x) >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def _seed_array(seed: int | list[int] | None, n: int) -> np.ndarray | None:
    if seed is None:
        return None
    if isinstance(seed, (list, tuple, np.ndarray)):
        seeds = [int(s) for s in seed]
        if len(seeds) != n:
            raise ValueError(f"reset: got {len(seeds)} seeds for {n} copies")
    else:
        seeds = [int(seed) + i for i in range(n)]
    if min(seeds) < 0 or max(seeds) >= _MAX_SEED:
        raise ValueError(f"reset: seeds must be in [0, 2**63), got {seed!r}")
    return np.asarray(seeds, dtype=np.uint64)


def parse_autoreset_mode(mode: str | AutoresetMode) -> AutoresetMode:
    """``AutoresetMode`` from ``"next_step"``/``"same_step"`` (or the enum / its value)."""
    if isinstance(mode, AutoresetMode):
        found = mode
    else:
        table = {"next_step": AutoresetMode.NEXT_STEP, "nextstep": AutoresetMode.NEXT_STEP,
                 "same_step": AutoresetMode.SAME_STEP, "samestep": AutoresetMode.SAME_STEP}
        found = table.get(str(mode).lower())
    if found not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
        raise ValueError(f"autoreset_mode must be 'next_step' or 'same_step', got {mode!r}")
    return found


class NativeVectorEnv(VectorEnv):
    """Base of the natively batched environments (see the module docstring for the hooks).

    Subclasses set ``single_observation_space``/``single_action_space`` through :meth:`_set_spaces`
    and list their per-copy state arrays (leading axis ``num_envs``) in ``state_fields``.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}
    state_fields: tuple[str, ...] = ()

    def __init__(self, num_envs: int = 1, autoreset_mode: str | AutoresetMode = "next_step") -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        mode = parse_autoreset_mode(autoreset_mode)
        self.num_envs = int(num_envs)
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}
        self.render_mode = None
        self._rng_key = seed_keys(np.arange(self.num_envs))
        self._rng_counter = np.zeros(self.num_envs, dtype=np.uint64)
        self._seeded = False
        self._needs_reset = np.ones(self.num_envs, dtype=bool)
        self._started = False

    # ----------------------------------------------------------------- helpers for subclasses
    def _set_spaces(self, observation: spaces.Space, action: spaces.Space) -> None:
        self.single_observation_space = observation
        self.single_action_space = action
        self.observation_space = batch_space(observation, self.num_envs)
        self.action_space = batch_space(action, self.num_envs)

    def _uniform(self, rows: np.ndarray, k: int) -> np.ndarray:
        """``[len(rows), k]`` uniforms from the streams of ``rows``; advances their counters by ``k``."""
        u = counter_uniform(self._rng_key[rows], self._rng_counter[rows], k)
        self._rng_counter[rows] += np.uint64(k)
        return u

    def _normal(self, rows: np.ndarray, k: int) -> np.ndarray:
        """``[len(rows), k]`` standard normals (Box-Muller on ``2k`` uniforms)."""
        u = self._uniform(rows, 2 * k)
        radius = np.sqrt(-2.0 * np.log1p(-u[:, :k]))
        return radius * np.cos(2.0 * np.pi * u[:, k:])

    def _action_mask(self) -> np.ndarray | None:
        """``[num_envs, n_actions]`` bool mask of valid discrete actions, or ``None`` if all are valid."""
        return None

    # ----------------------------------------------------------------- hooks
    def _reset_rows(self, rows: np.ndarray, options: dict[str, Any] | None) -> None:
        raise NotImplementedError

    def _step_rows(self, rows: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _observe(self) -> np.ndarray:
        raise NotImplementedError

    def _infos(self) -> dict[str, np.ndarray]:
        return {}

    # ----------------------------------------------------------------- gymnasium API
    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        """Reset every copy; ``seed=s`` seeds copy ``i`` with ``s + i``. Returns ``(obs, info)``."""
        seeds = _seed_array(seed, self.num_envs)
        if seeds is None and not self._seeded:
            seeds = np.random.SeedSequence().generate_state(self.num_envs, np.uint64) >> np.uint64(1)
        if seeds is not None:
            self._rng_key = seed_keys(seeds)
            self._rng_counter = np.zeros(self.num_envs, dtype=np.uint64)
            self._seeded = True
        self._reset_rows(np.arange(self.num_envs), options)
        self._needs_reset[:] = False
        self._started = True
        return self._observe(), self._vector_infos(self._infos())

    def step(self, actions: Any):
        """Step every copy (NEXT_STEP: copies that ended last step are reset and their action ignored)."""
        if not self._started:
            raise RuntimeError("step() called before reset()")
        if self.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP:
            return self._step_same(actions)
        n = self.num_envs
        rewards = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        live = np.flatnonzero(~self._needs_reset)
        dead = np.flatnonzero(self._needs_reset)
        actions = self.validate_actions(actions, live)
        if live.size:
            rewards[live], terminated[live], truncated[live] = self._step_rows(live, actions[live])
        if dead.size:
            self._reset_rows(dead, None)
        self._needs_reset = terminated | truncated
        return self._observe(), rewards, terminated, truncated, self._vector_infos(self._infos())

    def _step_same(self, actions: Any):
        rows = np.arange(self.num_envs)
        actions = self.validate_actions(actions, rows)
        rewards, terminated, truncated = self._step_rows(rows, actions)
        done = terminated | truncated
        if not done.any():
            return self._observe(), rewards, terminated, truncated, self._vector_infos(self._infos())
        final_obs_batch, final_infos = self._observe(), self._infos()
        done_rows = np.flatnonzero(done)
        self._reset_rows(done_rows, None)
        final_obs = np.full(self.num_envs, None, dtype=object)
        for i in done_rows:  # object array of per-copy observations, as SyncVectorEnv lays it out
            final_obs[i] = final_obs_batch[i]
        final_info = {k: np.where(done.reshape(-1, *([1] * (v.ndim - 1))), v, np.zeros_like(v))
                      for k, v in final_infos.items()}
        for k in final_infos:
            final_info["_" + k] = done.copy()
        infos = {"final_obs": final_obs, "_final_obs": done.copy(),
                 "final_info": final_info, "_final_info": done.copy()}
        infos.update(self._vector_infos(self._infos()))
        return self._observe(), rewards, terminated, truncated, infos

    def _vector_infos(self, infos: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for key, value in infos.items():
            out[key] = value
            out["_" + key] = np.ones(self.num_envs, dtype=bool)
        return out

    # ----------------------------------------------------------------- validation
    def validate_actions(self, actions: Any, rows: np.ndarray) -> np.ndarray:
        """Check a batch of actions ``[num_envs, ...]``; the copies ``rows`` must get valid ones.

        Raises :class:`InvalidActionError` naming the problem; clips Box actions to their bounds.
        """
        space = self.single_action_space
        arr = np.asarray(actions)
        want = (self.num_envs, *space.shape)
        if arr.shape != want:
            raise InvalidActionError(f"actions must have shape {want}, got {arr.shape}")
        if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
            return self._check_discrete(arr, rows)
        if isinstance(space, spaces.Box):
            sub = arr[rows].astype(np.float64, copy=False)
            if not np.isfinite(sub).all():
                bad = rows[~np.isfinite(sub.reshape(len(rows), -1)).all(axis=1)]
                raise InvalidActionError(f"non-finite action in copies {bad.tolist()}")
            return np.clip(arr.astype(space.dtype), space.low, space.high)
        raise TypeError(f"unsupported action space {space}")

    def _check_discrete(self, arr: np.ndarray, rows: np.ndarray) -> np.ndarray:
        space = self.single_action_space
        integral = np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool
        if not integral and (not np.issubdtype(arr.dtype, np.floating) or np.any(arr[rows] != np.round(arr[rows]))):
            raise InvalidActionError(f"discrete actions must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        if isinstance(space, spaces.Discrete):
            lo, hi = int(space.start), int(space.start + space.n)
        elif isinstance(space, spaces.MultiDiscrete):
            lo, hi = space.start, space.start + space.nvec
        else:
            lo, hi = 0, 2
        sub = arr[rows]
        bad = (sub < lo) | (sub >= hi)
        if bad.any():
            copies = rows[bad.reshape(len(rows), -1).any(axis=1)]
            raise InvalidActionError(
                f"action out of range [{lo}, {hi}) in copies {copies.tolist()}: {sub[bad].tolist()[:8]}")
        mask = self._action_mask()
        if mask is not None and rows.size:
            ok = mask[rows, sub - int(space.start)]
            if not ok.all():
                copies = rows[~ok]
                raise InvalidActionError(
                    f"masked (invalid) action in copies {copies.tolist()}: actions {sub[~ok].tolist()[:8]}; "
                    "pick actions where info['action_mask'] is True")
        return arr

    # ----------------------------------------------------------------- checkpointing
    def state_dict(self) -> dict[str, Any]:
        """A state tree (numpy arrays and JSON scalars) that restores the batch bitwise."""
        return {
            "num_envs": self.num_envs,
            "rng": {"key": self._rng_key.copy(), "counter": self._rng_counter.copy()},
            "seeded": self._seeded,
            "started": self._started,
            "needs_reset": self._needs_reset.copy(),
            "fields": {name: np.array(getattr(self, name), copy=True) for name in self.state_fields},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; shapes must match this env's configuration."""
        if int(state["num_envs"]) != self.num_envs:
            raise ValueError(f"state has num_envs={state['num_envs']}, env has {self.num_envs}")
        missing = set(self.state_fields) - set(state["fields"])
        if missing:
            raise ValueError(f"state is missing fields {sorted(missing)}")
        for name in self.state_fields:
            value = np.asarray(state["fields"][name])
            current = getattr(self, name)
            if hasattr(current, "shape") and value.shape != np.shape(current):
                raise ValueError(f"state field {name!r} has shape {value.shape}, env expects {np.shape(current)}")
            setattr(self, name, value.copy())
        self._rng_key = np.asarray(state["rng"]["key"], dtype=np.uint64).copy()
        self._rng_counter = np.asarray(state["rng"]["counter"], dtype=np.uint64).copy()
        self._seeded = bool(state["seeded"])
        self._started = bool(state["started"])
        self._needs_reset = np.asarray(state["needs_reset"], dtype=bool).copy()


def _unbatch(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v[0] for k, v in info.items() if not k.startswith("_")}


class SingleEnv(gymnasium.Env):
    """The single-env form of a :class:`NativeVectorEnv`: the same code with ``num_envs=1``.

    ``step`` after the episode ended raises ``RuntimeError`` (call ``reset``); there is no autoreset.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, vector_cls: type[NativeVectorEnv], **kwargs: Any) -> None:
        kwargs.pop("autoreset_mode", None)
        self.vector_env = vector_cls(num_envs=1, **kwargs)
        self.observation_space = self.vector_env.single_observation_space
        self.action_space = self.vector_env.single_action_space
        self.render_mode = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, info = self.vector_env.reset(seed=seed, options=options)
        return obs[0], _unbatch(info)

    def step(self, action: Any):
        vec = self.vector_env
        if not vec._started:
            raise RuntimeError("step() called before reset()")
        if vec._needs_reset[0]:
            raise RuntimeError("the episode is over (terminated or truncated): call reset()")
        arr = np.asarray(action)
        if arr.shape != self.action_space.shape:
            raise InvalidActionError(f"action must have shape {self.action_space.shape}, got {arr.shape}")
        rows = np.zeros(1, dtype=np.int64)
        actions = vec.validate_actions(arr[None], rows)
        reward, terminated, truncated = vec._step_rows(rows, actions)
        vec._needs_reset[0] = bool(terminated[0] or truncated[0])
        info = _unbatch(vec._infos())
        return vec._observe()[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), info

    def state_dict(self) -> dict[str, Any]:
        return self.vector_env.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.vector_env.load_state_dict(state)


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """``int(value)`` if it is an integer ``>= minimum``, else a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or int(value) != value or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_range(name: str, value: Any, low: float, high: float) -> float:
    """``float(value)`` if ``low <= value <= high``, else a ``ValueError`` naming ``name``."""
    value = float(value)
    if not (low <= value <= high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return value
