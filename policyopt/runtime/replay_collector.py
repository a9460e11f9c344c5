"""The off-policy collector: step the vector env with the behaviour policy, write the transitions
into a :class:`~policyopt.data.replay.ReplayBuffer`, hand the learner a :class:`ReplayBatch` that
samples minibatches from it.

Gymnasium 1.x autoreset is handled as in :mod:`policyopt.runtime.collectors`:

* ``NEXT_STEP``: the step that ends an episode returns the true final observation, which is stored
  as ``next_obs``; the following step only resets that copy and is *not* a transition: nothing is
  written for that copy (each env copy has its own write pointer in the buffer).
* ``SAME_STEP``: the reset observation comes back at once; the stored ``next_obs`` of an ended copy
  is ``info["final_obs"]`` (and its mask from ``info["final_info"]`` when masks are in the info).

Schedules (exploration, learning start, prioritized-replay beta) are functions of the collector's
step counter, which is checkpointed, so a resumed run behaves exactly like an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import Tensor

from policyopt.core.seeding import generator_state, set_generator_state
from policyopt.data.replay import ReplayBuffer, ReplaySpec, Transitions
from policyopt.runtime import envstate
from policyopt.runtime.collectors import ObsAdapter, restore_env


class Behaviour(Protocol):
    """What the collector needs from an off-policy algorithm."""

    def explore(self, obs: Tensor, mask: Tensor | None, step: int, generator: torch.Generator) -> Tensor:
        """Actions ``[N, ...]`` (as stored in the replay) for observations ``[N, D]`` at env step ``step``."""
        ...

    def to_env_actions(self, actions: Tensor) -> np.ndarray: ...


@dataclass
class ReplayBatch:
    """What one ``collect()`` returns: ``gradient_steps`` minibatches to draw with :meth:`sample`
    (lazily, so prioritized replay sees the priorities updated by the previous minibatch)."""

    replay: ReplayBuffer
    batch_size: int
    gradient_steps: int
    num_steps: int
    step: int
    """The collector's env-step counter after this collection (schedules are functions of it)."""
    episode_returns: list = field(default_factory=list)
    episode_lengths: list = field(default_factory=list)

    def sample(self, beta: float = 0.4) -> Transitions:
        return self.replay.sample(self.batch_size, beta)

    def update_priorities(self, indices: Tensor, priorities: Tensor) -> None:
        self.replay.update_priorities(indices, priorities)


def final_observations(adapter: ObsAdapter, info: dict, end: np.ndarray, nxt: np.ndarray,
                       nxt_mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """SAME_STEP autoreset: ``nxt`` (and its mask) with the rows of ended copies replaced by their
    true final observation from ``info["final_obs"]`` (mask from ``info["final_info"]``, else all allowed)."""
    idx = np.flatnonzero(end)
    final = info["final_obs"]
    if adapter.dict_obs:
        raw = {k: np.stack([final[i][k] for i in idx]) for k in final[idx[0]]}
    else:
        raw = np.stack([final[i] for i in idx])
    final_info = info.get("final_info", {})
    sub_info = {"action_mask": np.asarray(final_info["action_mask"])[idx]} if "action_mask" in final_info else {}
    flat, mask = adapter(raw, sub_info)
    stored = nxt.copy()
    stored[idx] = flat
    stored_mask = None
    if nxt_mask is not None:
        stored_mask = nxt_mask.copy()
        stored_mask[idx] = mask if mask is not None else True
    return stored, stored_mask


def env_state_or_warning(env) -> dict:
    """The env's state tree, or ``{"unavailable": reason}`` with a loud warning (e.g. MuJoCo)."""
    try:
        return envstate.get_env_state(env)
    except envstate.EnvStateError as err:
        warnings.warn(f"environment state cannot be checkpointed ({err}); a resumed run will restart "
                      "its episodes and will NOT be an exact continuation", RuntimeWarning, stacklevel=3)
        return {"unavailable": str(err)}


class ReplayCollector:
    """Steps ``train_freq`` vector steps per call (``train_freq * num_envs`` env steps) with
    ``behaviour.explore``; learning starts once more than ``learning_starts`` env steps are stored.
    ``gradient_steps = -1`` asks for one gradient step per env step collected."""

    def __init__(self, env, behaviour: Behaviour, spec: ReplaySpec, *, train_freq: int, gradient_steps: int,
                 batch_size: int, learning_starts: int, seed: int, generator_seed: int, replay_seed: int,
                 save_replay: bool = True):
        self.env, self.behaviour = env, behaviour
        self.num_envs = env.num_envs
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"autoreset mode {mode} is not supported: use NEXT_STEP or SAME_STEP")
        self.same_step = mode == AutoresetMode.SAME_STEP
        self.adapter = ObsAdapter(env.single_observation_space)
        self.train_freq, self.gradient_steps, self.batch_size = train_freq, gradient_steps, batch_size
        self.learning_starts, self.save_replay = learning_starts, save_replay
        self.generator = torch.Generator().manual_seed(generator_seed)
        raw, info = env.reset(seed=seed)
        self.obs, self.mask = self.adapter(raw, info)
        mask_dim = None if self.mask is None else self.mask.shape[-1]
        self.replay = ReplayBuffer(dataclasses.replace(spec, num_envs=self.num_envs, obs_dim=self.adapter.dim,
                                                       mask_dim=mask_dim), replay_seed)
        self.prev_end = np.zeros(self.num_envs, bool)
        self.ep_return = np.zeros(self.num_envs, np.float64)
        self.ep_length = np.zeros(self.num_envs, np.int64)
        self.step = 0

    def normalize_eval_obs(self, flat: np.ndarray) -> np.ndarray:
        return flat

    def collect(self) -> ReplayBatch:
        ep_returns: list = []
        ep_lengths: list = []
        with torch.no_grad():
            for _ in range(self.train_freq):
                self._env_step(ep_returns, ep_lengths)
        n = self.train_freq * self.num_envs
        learn = self.step > self.learning_starts and len(self.replay) > 0
        steps = (self.gradient_steps if self.gradient_steps >= 0 else n) if learn else 0
        return ReplayBatch(self.replay, self.batch_size, steps, n, self.step, ep_returns, ep_lengths)

    def _env_step(self, ep_returns: list, ep_lengths: list) -> None:
        obs_t = torch.from_numpy(self.obs)
        mask_t = None if self.mask is None else torch.from_numpy(self.mask)
        actions = self.behaviour.explore(obs_t, mask_t, self.step, self.generator)
        raw, r, term, trunc, info = self.env.step(self.behaviour.to_env_actions(actions))
        term, trunc = np.asarray(term, bool), np.asarray(trunc, bool)
        end = term | trunc
        valid = np.ones(self.num_envs, bool) if self.same_step else ~self.prev_end
        nxt, nxt_mask = self.adapter(raw, info)
        stored, stored_mask = nxt, nxt_mask
        if self.same_step and end.any():
            stored, stored_mask = final_observations(self.adapter, info, end, nxt, nxt_mask)
        r = np.asarray(r, np.float32)
        envs = np.flatnonzero(valid)
        if len(envs) == self.num_envs:
            self.replay.add(envs, self.obs, actions.numpy(), r, stored, term, end, stored_mask)
        else:
            self.replay.add(envs, self.obs[envs], actions.numpy()[envs], r[envs], stored[envs], term[envs], end[envs],
                            None if stored_mask is None else stored_mask[envs])
        self.ep_return += np.where(valid, r, 0.0)
        self.ep_length += valid
        if end.any():
            ep_returns += self.ep_return[end].tolist()
            ep_lengths += self.ep_length[end].tolist()
            self.ep_return[end] = 0.0
            self.ep_length[end] = 0
        self.obs, self.mask, self.prev_end = nxt, nxt_mask, end
        self.step += self.num_envs

    # -- checkpointing -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"env": env_state_or_warning(self.env), "obs": self.obs.copy(),
                 "mask": None if self.mask is None else self.mask.copy(),
                 "prev_end": self.prev_end.copy(), "ep_return": self.ep_return.copy(),
                 "ep_length": self.ep_length.copy(), "generator": generator_state(self.generator),
                 "step": self.step}
        if self.save_replay:
            state["replay"] = self.replay.state_dict()
        else:
            warnings.warn(f"replay.save_replay is False: the checkpoint does NOT contain the replay buffer "
                          f"({len(self.replay):,} transitions); a resumed run restarts with an empty buffer and "
                          "will NOT be an exact continuation", RuntimeWarning, stacklevel=2)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.obs, self.mask, self.prev_end, exact = restore_env(self.env, state, self.adapter)
        self.ep_return, self.ep_length = state["ep_return"].copy(), state["ep_length"].copy()
        if not exact:
            self.ep_return[:], self.ep_length[:] = 0.0, 0
        set_generator_state(self.generator, state["generator"])
        self.step = int(state["step"])
        if "replay" in state:
            self.replay.load_state_dict(state["replay"])
        else:
            warnings.warn("the checkpoint holds no replay buffer (saved with replay.save_replay=False): "
                          "learning continues from an EMPTY buffer; this is not an exact continuation",
                          RuntimeWarning, stacklevel=2)
