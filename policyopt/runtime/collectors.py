"""Collectors turn a policy and a source into one typed batch.

:class:`RolloutCollector` steps a Gymnasium vector environment (any ``gymnasium.make_vec`` mode,
or a native batch env) with an actor-critic policy and returns a :class:`~policyopt.data.rollout.Rollout`.
Both Gymnasium 1.x autoreset modes are handled:

* ``NEXT_STEP`` (the default of ``make_vec``): the step that ends an episode returns the true final
  observation; the following step only resets that copy. That reset step is not a transition: it is
  stored with ``valid=False`` and masked out of the loss.
* ``SAME_STEP``: the reset observation comes back at once and the final one is in
  ``info["final_obs"]``; truncated copies bootstrap from the value of that final observation.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from policyopt.core.seeding import generator_state, set_generator_state
from policyopt.data.normalize import ObsNormalizer, RewardNormalizer
from policyopt.data.rollout import Rollout
from policyopt.runtime import envstate


def restore_env(env, state: dict, process) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, bool]:
    """Restore a collector's env and in-flight ``(obs, mask, prev_end)`` from its state; when the env
    state could not be captured (``{"unavailable": ...}``), warn and start fresh episodes instead.
    ``process(raw, info) -> (obs, mask)`` prepares reset observations. Returns ``(..., exact)``."""
    if "unavailable" in state["env"]:
        warnings.warn("resuming without environment state: episodes restart from a fresh reset, so this run "
                      "is not an exact continuation", RuntimeWarning, stacklevel=3)
        obs, mask = process(*env.reset())
        return obs, mask, np.zeros(env.num_envs, bool), False
    envstate.set_env_state(env, state["env"])
    mask = None if state["mask"] is None else state["mask"].copy()
    return state["obs"].copy(), mask, state["prev_end"].copy(), True


class ObsAdapter:
    """Flattens observations to float32 ``[N, D]`` and extracts action masks.

    Supports Box and Discrete (one-hot) observations, and Dict observations with keys
    ``"observation"`` and ``"action_mask"``; otherwise masks are read from ``info["action_mask"]``.
    """

    def __init__(self, single_space: spaces.Space):
        self.dict_obs = isinstance(single_space, spaces.Dict)
        inner = single_space
        if self.dict_obs:
            if "observation" not in single_space.spaces:
                raise ValueError(
                    f"Dict observation spaces need an 'observation' key (and optionally 'action_mask'); "
                    f"got keys {list(single_space.spaces)}")
            inner = single_space["observation"]
        if isinstance(inner, spaces.Box):
            self.one_hot, self.dim = 0, int(np.prod(inner.shape))
        elif isinstance(inner, spaces.Discrete):
            self.one_hot, self.dim = int(inner.n), int(inner.n)
        else:
            raise ValueError(f"unsupported observation space {inner!r}: use Box, Discrete or a Dict with "
                             "'observation' and 'action_mask'")

    def __call__(self, obs, info: dict) -> tuple[np.ndarray, np.ndarray | None]:
        mask = None
        if self.dict_obs:
            mask = obs.get("action_mask")
            obs = obs["observation"]
        elif "action_mask" in info:
            mask = info["action_mask"]
        if self.one_hot:
            flat = np.eye(self.one_hot, dtype=np.float32)[np.asarray(obs, dtype=np.int64)]
        else:
            # C order always: native envs may return transposed views, and a matmul on a
            # non-contiguous input takes another kernel path (other float rounding), which would
            # break bitwise-exact resume (the checkpointed copy is C-contiguous).
            flat = np.ascontiguousarray(np.asarray(obs, dtype=np.float32).reshape(len(obs), -1))
        return flat, None if mask is None else np.asarray(mask, dtype=bool)


class RolloutCollector:
    """Collects ``num_steps`` steps from each of the env's copies per call (batch-first)."""

    def __init__(self, env, policy, num_steps: int, seed: int, generator_seed: int,
                 normalize_obs: bool = False, normalize_reward: bool = False, gamma: float = 0.99,
                 clip_obs: float = 10.0, extra_obs_key: str | None = None):
        self.env, self.policy, self.num_steps = env, policy, num_steps
        self.extra_obs_key = extra_obs_key  # store info[key] per step in Rollout.extra_obs (e.g. PDPPO)
        self.num_envs = env.num_envs
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"autoreset mode {mode} is not supported: use NEXT_STEP or SAME_STEP")
        self.same_step = mode == AutoresetMode.SAME_STEP
        self.adapter = ObsAdapter(env.single_observation_space)
        self.obs_norm = ObsNormalizer((self.adapter.dim,), clip_obs) if normalize_obs else None
        self.rew_norm = RewardNormalizer(self.num_envs, gamma) if normalize_reward else None
        self.generator = torch.Generator().manual_seed(generator_seed)
        raw, info = env.reset(seed=seed)
        self.obs, self.mask = self._process(raw, info)
        self.prev_end = np.zeros(self.num_envs, bool)
        self.ep_return = np.zeros(self.num_envs, np.float64)
        self.ep_length = np.zeros(self.num_envs, np.int64)

    def _process(self, raw, info) -> tuple[np.ndarray, np.ndarray | None]:
        flat, mask = self.adapter(raw, info)
        if self.obs_norm is not None:
            flat = np.ascontiguousarray(self.obs_norm(flat, update=True))
        return flat, mask

    def normalize_eval_obs(self, flat: np.ndarray) -> np.ndarray:
        """Apply the (frozen) observation normaliser to evaluation observations."""
        return flat if self.obs_norm is None else self.obs_norm(flat, update=False)

    def collect(self) -> Rollout:
        T, N, policy = self.num_steps, self.num_envs, self.policy
        obs_b = torch.empty(T, N, self.adapter.dim)
        logp_b, val_b, rew_b = torch.empty(T, N), torch.empty(T, N), torch.empty(T, N)
        term_b, end_b, valid_b = (torch.empty(T, N, dtype=torch.bool) for _ in range(3))
        mask_b = None if self.mask is None else torch.empty(T, N, self.mask.shape[-1], dtype=torch.bool)
        actions, boot, ep_returns, ep_lengths, extra = [], [], [], [], []
        with torch.no_grad():
            for t in range(T):
                obs_t = torch.from_numpy(self.obs)
                mask_t = None if self.mask is None else torch.from_numpy(self.mask)
                a, logp, v = policy.act(obs_t, mask_t, self.generator)
                raw, r, term, trunc, info = self.env.step(policy.to_env_actions(a))
                valid = ~self.prev_end if not self.same_step else np.ones(N, bool)
                end = term | trunc
                self._track(r, end, valid, ep_returns, ep_lengths)
                if self.same_step and trunc.any():
                    boot.append((t, self._final_values(info, trunc)))
                if self.rew_norm is not None:
                    r = self.rew_norm(r, end, valid)
                obs_b[t], logp_b[t], val_b[t], rew_b[t] = obs_t, logp, v, torch.from_numpy(np.asarray(r))
                term_b[t], end_b[t], valid_b[t] = (torch.from_numpy(x) for x in (term, end, valid))
                if mask_b is not None:
                    mask_b[t] = mask_t
                actions.append(a)
                if self.extra_obs_key is not None:
                    extra.append(self._extra_obs(info, end))
                self.obs, self.mask = self._process(raw, info)
                self.prev_end = end
            last_v = policy.value(torch.from_numpy(self.obs))
        next_v = torch.cat([val_b[1:], last_v[None]], 0)
        for t, (idx, values) in boot:
            next_v[t, idx] = values
        return Rollout(obs_b, torch.stack(actions), logp_b, val_b, next_v, rew_b, term_b, end_b, valid_b,
                       mask_b, T * N, ep_returns, ep_lengths, torch.from_numpy(self.obs),
                       torch.stack(extra) if extra else None)

    def _extra_obs(self, info: dict, end: np.ndarray) -> torch.Tensor:
        """``info[extra_obs_key]`` as float32 ``[N, D]`` (normalised like observations if enabled);
        under SAME_STEP autoreset, copies that just ended take it from ``info["final_info"]``."""
        key = self.extra_obs_key
        if key not in info:
            raise KeyError(f"extra_obs_key {key!r} is not in the environment's info (keys: {sorted(info)})")
        x = np.asarray(info[key], dtype=np.float32).reshape(self.num_envs, -1)
        if self.same_step and end.any():
            final = np.asarray(info["final_info"][key], dtype=np.float32).reshape(self.num_envs, -1)
            x = np.where(end[:, None], final, x)
        if self.obs_norm is not None and x.shape[1] == self.adapter.dim:
            x = self.obs_norm(x, update=False)
        return torch.from_numpy(np.ascontiguousarray(x))

    def _track(self, r, end, valid, ep_returns: list, ep_lengths: list) -> None:
        self.ep_return += np.where(valid, r, 0.0)
        self.ep_length += valid
        if end.any():
            ep_returns += self.ep_return[end].tolist()
            ep_lengths += self.ep_length[end].tolist()
            self.ep_return[end] = 0.0
            self.ep_length[end] = 0

    def _final_values(self, info: dict, trunc: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.flatnonzero(trunc)
        final = info["final_obs"]
        if self.adapter.dict_obs:
            raw = {k: np.stack([final[i][k] for i in idx]) for k in final[idx[0]]}
        else:
            raw = np.stack([final[i] for i in idx])
        flat, _ = self.adapter(raw, {})
        if self.obs_norm is not None:
            flat = self.obs_norm(flat, update=False)
        return torch.from_numpy(idx), self.policy.value(torch.from_numpy(flat))

    def state_dict(self) -> dict:
        try:
            env_state = envstate.get_env_state(self.env)
        except envstate.EnvStateError as err:
            warnings.warn(f"environment state cannot be checkpointed ({err}); a resumed run will restart "
                          "its episodes and will NOT be an exact continuation", RuntimeWarning, stacklevel=2)
            env_state = {"unavailable": str(err)}
        state = {
            "env": env_state,
            "obs": self.obs.copy(), "mask": None if self.mask is None else self.mask.copy(),
            "prev_end": self.prev_end.copy(), "ep_return": self.ep_return.copy(),
            "ep_length": self.ep_length.copy(), "generator": generator_state(self.generator),
        }
        if self.obs_norm is not None:
            state["obs_norm"] = self.obs_norm.state_dict()
        if self.rew_norm is not None:
            state["rew_norm"] = self.rew_norm.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.obs, self.mask, self.prev_end, exact = restore_env(self.env, state, self._process)
        self.ep_return, self.ep_length = state["ep_return"].copy(), state["ep_length"].copy()
        if not exact:
            self.ep_return[:], self.ep_length[:] = 0.0, 0
        set_generator_state(self.generator, state["generator"])
        if self.obs_norm is not None:
            self.obs_norm.load_state_dict(state["obs_norm"])
        if self.rew_norm is not None:
            self.rew_norm.load_state_dict(state["rew_norm"])
