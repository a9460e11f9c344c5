"""Replay storage for off-policy learning: preallocated, batch-first, checkpointable.

Layout: every field is one preallocated tensor ``[capacity, num_envs, ...]`` (row = time slot of
one env copy, column = env copy). Each column has its own write pointer, so a step that is *not*
a transition for one copy (the reset step of Gymnasium's NEXT_STEP autoreset) is simply not
written for it, and the time order inside a column is exactly the episode order needed by n-step
returns. ``next_obs`` is stored explicitly, so a truncated episode bootstraps from its true final
observation.

Sampling draws ``[B]`` transitions uniformly over all stored ones, or proportionally to
``priority ** alpha`` with a sum-tree (prioritized experience replay, Schaul et al., 2016,
"Prioritized Experience Replay", arXiv:1511.05952). n-step returns (Sutton, 1988; used by
Rainbow, Hessel et al., 2018) are computed at sample time, vectorised over the batch:

    G = sum_{k<m} gamma^k r_{t+k},   discount = gamma^m * (1 - terminated_{t+m-1}),
    target = G + discount * V(next_obs_{t+m-1})

where ``m <= n`` stops at the first end of episode (termination *or* truncation) and at the newest
stored row. A termination cuts the bootstrap; a truncation keeps it (from the true final
observation).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from policyopt.core.config import configclass
from policyopt.core.seeding import generator_state, set_generator_state
from policyopt.losses.td import n_step_return


@dataclass
class Transitions:
    """A minibatch of (n-step) transitions, ``[B, ...]``.

    ``returns`` is the discounted n-step reward sum and ``discounts`` the factor in front of the
    bootstrap value (0 after a termination); ``next_mask`` the action mask at ``next_obs``;
    ``weights`` the importance-sampling weights of prioritized replay (None when uniform);
    ``indices`` the flat storage slots (to update priorities).
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    next_obs: Tensor
    discounts: Tensor
    next_mask: Tensor | None = None
    weights: Tensor | None = None
    indices: Tensor | None = None

    def __len__(self) -> int:
        return self.obs.shape[0]


class SumTree:
    """A binary sum-tree over ``size`` leaves (float64), vectorised over batches of leaves.

    Sampling a value ``u in [0, total)`` descends the tree level by level for the whole batch at
    once; updating leaves recomputes their ancestors from their children (never by deltas, so the
    tree rebuilt from its leaves is bitwise the same).
    """

    def __init__(self, size: int):
        self.size = size
        self.leaves = 1 << max(0, (size - 1).bit_length())
        self.tree = np.zeros(2 * self.leaves, np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def set(self, idx: np.ndarray, values: np.ndarray) -> None:
        node = np.asarray(idx, np.int64) + self.leaves
        self.tree[node] = values
        node = np.unique(node // 2)
        while node[0] >= 1:
            self.tree[node] = self.tree[2 * node] + self.tree[2 * node + 1]
            if node[0] == 1:
                break
            node = np.unique(node // 2)

    def get(self, idx: np.ndarray) -> np.ndarray:
        return self.tree[np.asarray(idx, np.int64) + self.leaves]

    def find(self, u: np.ndarray) -> np.ndarray:
        """Leaf indices whose prefix-sum interval contains ``u [B]``."""
        node = np.ones(len(u), np.int64)
        u = u.astype(np.float64).copy()
        while node[0] < self.leaves:
            left = 2 * node
            lv = self.tree[left]
            go_right = u >= lv
            u = np.where(go_right, u - lv, u)
            node = np.where(go_right, left + 1, left)
        return np.minimum(node - self.leaves, self.size - 1)

    def rebuild(self) -> None:
        lvl = self.leaves
        while lvl > 1:
            parents = np.arange(lvl // 2, lvl)
            self.tree[parents] = self.tree[2 * parents] + self.tree[2 * parents + 1]
            lvl //= 2


@dataclass
class ReplaySpec:
    """Shapes and options of a replay buffer."""

    capacity: int
    """Total transitions kept (split evenly over the env copies; at least one row per copy)."""
    num_envs: int
    obs_dim: int
    action_shape: tuple[int, ...] = ()
    action_dtype: torch.dtype = torch.int64
    mask_dim: int | None = None
    n_step: int = 1
    gamma: float = 0.99
    prioritized: bool = False
    alpha: float = 0.6
    priority_eps: float = 1e-6


class ReplayBuffer:
    """Preallocated ring storage ``[rows, num_envs, ...]`` with per-copy write pointers."""

    def __init__(self, spec: ReplaySpec, seed: int):
        if spec.capacity < spec.num_envs:
            raise ValueError(f"replay capacity {spec.capacity} is smaller than num_envs {spec.num_envs}")
        if spec.n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {spec.n_step}")
        self.spec = spec
        rows, n = spec.capacity // spec.num_envs, spec.num_envs
        self.rows = rows
        # numpy storage (cheap per-step writes) with torch views of the same memory (batched reads)
        self.np: dict[str, np.ndarray] = {
            "obs": np.zeros((rows, n, spec.obs_dim), np.float32),
            "next_obs": np.zeros((rows, n, spec.obs_dim), np.float32),
            "actions": torch.zeros(rows, n, *spec.action_shape, dtype=spec.action_dtype).numpy(),
            "rewards": np.zeros((rows, n), np.float32),
            "terminated": np.zeros((rows, n), bool), "ended": np.zeros((rows, n), bool)}
        if spec.mask_dim is not None:
            self.np["next_mask"] = np.ones((rows, n, spec.mask_dim), bool)
        t = {k: torch.from_numpy(v) for k, v in self.np.items()}
        self.obs, self.next_obs, self.actions, self.rewards = t["obs"], t["next_obs"], t["actions"], t["rewards"]
        self.terminated, self.ended, self.next_mask = t["terminated"], t["ended"], t.get("next_mask")
        self.pos = np.zeros(n, np.int64)
        self.size = np.zeros(n, np.int64)
        self.generator = torch.Generator().manual_seed(seed)
        self.tree = SumTree(rows * n) if spec.prioritized else None
        self.max_priority = 1.0
        self.gammas = spec.gamma ** torch.arange(spec.n_step + 1, dtype=torch.float32)

    def __len__(self) -> int:
        return int(self.size.sum())

    def fields(self) -> dict[str, Tensor]:
        out = {"obs": self.obs, "next_obs": self.next_obs, "actions": self.actions, "rewards": self.rewards,
               "terminated": self.terminated, "ended": self.ended}
        if self.next_mask is not None:
            out["next_mask"] = self.next_mask
        return out

    # -- writing -------------------------------------------------------------------------------
    def add(self, envs: np.ndarray, obs, actions, rewards, next_obs, terminated, ended, next_mask=None) -> None:
        """Write one transition for each env copy in ``envs [K]``; inputs ``[K, ...]`` numpy arrays
        (or tensors)."""
        if len(envs) == 0:
            return
        rows = self.pos[envs]
        st = self.np
        for name, x in (("obs", obs), ("next_obs", next_obs), ("actions", actions), ("rewards", rewards),
                        ("terminated", terminated), ("ended", ended), ("next_mask", next_mask)):
            if x is not None and name in st:
                st[name][rows, envs] = x.numpy() if isinstance(x, Tensor) else x
        if self.tree is not None:
            self.tree.set(rows * self.spec.num_envs + envs, np.full(len(envs), self.max_priority ** self.spec.alpha))
        self.pos[envs] = (rows + 1) % self.rows
        self.size[envs] = np.minimum(self.size[envs] + 1, self.rows)

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, batch_size: int, beta: float = 0.4) -> Transitions:
        """``batch_size`` transitions with n-step returns (see the module docstring)."""
        total = len(self)
        if total == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        n_env = self.spec.num_envs
        weights = None
        if self.tree is None:
            flat = torch.randint(0, total, (batch_size,), generator=self.generator).numpy()
            cum = np.cumsum(self.size)
            env = np.searchsorted(cum, flat, side="right")
            offset = flat - (cum[env] - self.size[env])
            row = (self.pos[env] - self.size[env] + offset) % self.rows
        else:
            u = torch.rand(batch_size, generator=self.generator, dtype=torch.float64).numpy()
            u *= self.tree.total * (1.0 - 1e-12)
            leaf = self.tree.find(u)
            row, env = leaf // n_env, leaf % n_env
            probs = self.tree.get(leaf) / self.tree.total
            w = (total * probs) ** (-beta)
            weights = torch.from_numpy((w / w.max()).astype(np.float32))
        return self._gather(row, env, weights)

    def _gather(self, row: np.ndarray, env: np.ndarray, weights: Tensor | None) -> Transitions:
        r, e = torch.from_numpy(row), torch.from_numpy(env)
        n = self.spec.n_step
        obs, actions = self.obs[r, e], self.actions[r, e]
        if n == 1:
            last = r
            rewards = self.rewards[r, e]
            discounts = self.gammas[1] * (~self.terminated[r, e]).float()
        else:
            # rows ahead of t in its column (t itself included), at most n
            ahead = torch.from_numpy((self.pos[env] - row - 1) % self.rows + 1).clamp_(max=n)
            k = torch.arange(n)
            rows_k, cols = (r[:, None] + k) % self.rows, e[:, None]          # [B, n]
            rewards, discounts, m = n_step_return(self.rewards[rows_k, cols], self.terminated[rows_k, cols],
                                                  self.ended[rows_k, cols], k < ahead[:, None], self.spec.gamma)
            last = (r + m - 1) % self.rows
        next_mask = None if self.next_mask is None else self.next_mask[last, e]
        return Transitions(obs, actions, rewards, self.next_obs[last, e], discounts, next_mask, weights,
                           torch.from_numpy(row * self.spec.num_envs + env))

    def update_priorities(self, indices: Tensor, priorities: Tensor) -> None:
        """Set the priorities (e.g. ``|TD error|``) of sampled slots ``indices [B]``."""
        if self.tree is None:
            return
        p = priorities.detach().double().abs().numpy() + self.spec.priority_eps
        self.max_priority = max(self.max_priority, float(p.max()))
        self.tree.set(indices.numpy(), p ** self.spec.alpha)

    # -- checkpointing -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The filled rows of every field, pointers, sampling RNG and priorities."""
        used = int(self.size.max())
        state: dict = {name: t[:used].clone() for name, t in self.fields().items()}
        state.update({"pos": self.pos.copy(), "size": self.size.copy(), "rows": self.rows,
                      "generator": generator_state(self.generator), "max_priority": self.max_priority})
        if self.tree is not None:
            state["priorities"] = self.tree.tree[self.tree.leaves:self.tree.leaves + self.tree.size].copy()
        return state

    def load_state_dict(self, state: dict) -> None:
        if int(state["rows"]) != self.rows:
            raise ValueError(f"checkpointed replay has {state['rows']} rows per env copy, this buffer {self.rows} "
                             "(capacity or num_envs changed)")
        for name, t in self.fields().items():
            saved = state[name]
            t.fill_(name == "next_mask")  # unused rows: zeros (masks: all allowed), as when preallocated
            t[:saved.shape[0]] = saved
        self.pos, self.size = np.asarray(state["pos"]).copy(), np.asarray(state["size"]).copy()
        set_generator_state(self.generator, state["generator"])
        self.max_priority = float(state["max_priority"])
        if self.tree is not None:
            if "priorities" not in state:
                warnings.warn("checkpoint has no replay priorities: all set to 1", RuntimeWarning, stacklevel=2)
                self.tree.set(np.arange(self.tree.size), np.ones(self.tree.size))
            else:
                self.tree.tree[:] = 0.0
                self.tree.tree[self.tree.leaves:self.tree.leaves + self.tree.size] = state["priorities"]
                self.tree.rebuild()


@configclass
class ReplayConfig:
    buffer_size: Annotated[int, Field(gt=0)] = 1_000_000
    """Transitions kept in the replay buffer (split evenly over the env copies)."""
    n_step: Annotated[int, Field(ge=1)] = 1
    """Steps of the n-step return (1 = one-step TD)."""
    prioritized: bool = False
    """Prioritized experience replay (Schaul et al., 2016) with a sum-tree."""
    alpha: Annotated[float, Field(ge=0.0)] = 0.6
    """Priority exponent (0 = uniform)."""
    beta0: Annotated[float, Field(ge=0.0, le=1.0)] = 0.4
    """Initial importance-sampling exponent, annealed linearly to 1 over the run."""
    save_replay: bool = True
    """Store the replay buffer in checkpoints (needed for an exact resume). False keeps checkpoints
    small but warns loudly: a resumed run then restarts with an empty buffer."""
