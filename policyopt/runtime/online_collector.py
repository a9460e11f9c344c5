"""The on-policy TD collector (SARSA family): consecutive transitions with the *next* action.

SARSA's target needs ``a'``, the action the behaviour policy takes at ``s'``. The collector picks it
when it observes ``s'`` (so it is the action actually executed next) and returns, per call,
``train_freq`` vector steps of ``(s, a, r, s', a')`` as one flat :class:`OnlineTransitions` batch.
Autoreset as in :mod:`policyopt.runtime.collectors`: the NEXT_STEP reset step is not a
transition; a truncated copy bootstraps from its true final observation (with an action drawn
there); under SAME_STEP the final observation comes from ``info["final_obs"]`` and the action
for it is drawn separately from the one executed at the reset observation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import Tensor

from policyopt.core.seeding import generator_state, set_generator_state
from policyopt.runtime import envstate
from policyopt.runtime.collectors import ObsAdapter
from policyopt.runtime.replay_collector import Behaviour, env_state_or_warning, final_observations


@dataclass
class OnlineTransitions:
    """Flat ``[B, ...]`` transitions in collection order (time-major, then env copy)."""

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    next_obs: Tensor
    next_actions: Tensor
    terminated: Tensor
    next_mask: Tensor | None
    num_steps: int
    step: int
    episode_returns: list = field(default_factory=list)
    episode_lengths: list = field(default_factory=list)


class OnlineCollector:
    """Steps ``train_freq`` vector steps per call; every action comes from ``behaviour.explore``."""

    def __init__(self, env, behaviour: Behaviour, *, train_freq: int, seed: int, generator_seed: int):
        self.env, self.behaviour, self.train_freq = env, behaviour, train_freq
        self.num_envs = env.num_envs
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"autoreset mode {mode} is not supported: use NEXT_STEP or SAME_STEP")
        self.same_step = mode == AutoresetMode.SAME_STEP
        self.adapter = ObsAdapter(env.single_observation_space)
        self.generator = torch.Generator().manual_seed(generator_seed)
        raw, info = env.reset(seed=seed)
        self.obs, self.mask = self.adapter(raw, info)
        self.step = 0
        self.action = self._choose(self.obs, self.mask)
        self.prev_end = np.zeros(self.num_envs, bool)
        self.ep_return = np.zeros(self.num_envs, np.float64)
        self.ep_length = np.zeros(self.num_envs, np.int64)

    def _choose(self, obs: np.ndarray, mask: np.ndarray | None) -> Tensor:
        with torch.no_grad():
            return self.behaviour.explore(torch.from_numpy(obs), None if mask is None else torch.from_numpy(mask),
                                          self.step, self.generator)

    def normalize_eval_obs(self, flat: np.ndarray) -> np.ndarray:
        return flat

    def collect(self) -> OnlineTransitions:
        parts: list[tuple] = []
        ep_returns: list = []
        ep_lengths: list = []
        for _ in range(self.train_freq):
            parts.append(self._env_step(ep_returns, ep_lengths))
        cols = list(zip(*parts))
        masks = None if cols[6][0] is None else torch.cat(cols[6])
        return OnlineTransitions(*(torch.cat(c) for c in cols[:6]), masks, self.train_freq * self.num_envs,
                                 self.step, ep_returns, ep_lengths)

    def _env_step(self, ep_returns: list, ep_lengths: list) -> tuple:
        obs, action = self.obs, self.action
        raw, r, term, trunc, info = self.env.step(self.behaviour.to_env_actions(action))
        term, trunc = np.asarray(term, bool), np.asarray(trunc, bool)
        end = term | trunc
        valid = np.ones(self.num_envs, bool) if self.same_step else ~self.prev_end
        nxt, nxt_mask = self.adapter(raw, info)
        self.step += self.num_envs
        next_action = self._choose(nxt, nxt_mask)
        stored, stored_mask, boot_action = nxt, nxt_mask, next_action
        if self.same_step and end.any():
            stored, stored_mask = final_observations(self.adapter, info, end, nxt, nxt_mask)
            boot_action = next_action.clone()
            boot_action[torch.from_numpy(end)] = self._choose(stored[end], None if stored_mask is None
                                                              else stored_mask[end])
        r = np.asarray(r, np.float32)
        self.ep_return += np.where(valid, r, 0.0)
        self.ep_length += valid
        if end.any():
            ep_returns += self.ep_return[end].tolist()
            ep_lengths += self.ep_length[end].tolist()
            self.ep_return[end] = 0.0
            self.ep_length[end] = 0
        self.obs, self.mask, self.action, self.prev_end = nxt, nxt_mask, next_action, end
        v = torch.from_numpy(valid)
        return (torch.from_numpy(obs)[v], action[v], torch.from_numpy(r)[v], torch.from_numpy(stored)[v],
                boot_action[v], torch.from_numpy(term)[v], None if stored_mask is None
                else torch.from_numpy(stored_mask)[v])

    def state_dict(self) -> dict:
        return {"env": env_state_or_warning(self.env), "obs": self.obs.copy(),
                "mask": None if self.mask is None else self.mask.copy(), "action": self.action.clone(),
                "prev_end": self.prev_end.copy(), "ep_return": self.ep_return.copy(),
                "ep_length": self.ep_length.copy(), "generator": generator_state(self.generator), "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        set_generator_state(self.generator, state["generator"])
        self.step = int(state["step"])
        if "unavailable" in state["env"]:
            warnings.warn("resuming without environment state: episodes restart from a fresh reset, so this run "
                          "is not an exact continuation", RuntimeWarning, stacklevel=2)
            raw, info = self.env.reset()
            self.obs, self.mask = self.adapter(raw, info)
            self.action = self._choose(self.obs, self.mask)
            self.prev_end = np.zeros(self.num_envs, bool)
            self.ep_return, self.ep_length = np.zeros(self.num_envs), np.zeros(self.num_envs, np.int64)
            return
        envstate.set_env_state(self.env, state["env"])
        self.obs, self.prev_end = state["obs"].copy(), state["prev_end"].copy()
        self.mask = None if state["mask"] is None else state["mask"].copy()
        self.action = state["action"].clone()
        self.ep_return, self.ep_length = state["ep_return"].copy(), state["ep_length"].copy()
