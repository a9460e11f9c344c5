"""The on-policy batch: one typed dataclass per iteration, time-major ``[T, N, ...]``."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class Rollout:
    """``T`` steps of ``N`` environment copies.

    ``valid`` is False for the steps gymnasium's NEXT_STEP autoreset spends on resetting a finished
    copy (its action is ignored and it is not a transition); those steps are masked out of every
    loss. ``next_values[t]`` is the value of the state reached by step ``t`` (the true final
    observation when an episode was truncated), ``episode_end = terminated | truncated``.
    ``extra_obs[t]`` is the collector's ``info[extra_obs_key]`` returned by step ``t`` (for an episode
    that ends at ``t`` under SAME_STEP autoreset, the one in ``info["final_info"]``).
    """

    obs: Tensor            # [T, N, obs_dim] float32 (normalised if enabled)
    actions: Tensor        # [T, N] int64 | [T, N, K] int64 | [T, N, D] float32
    logp: Tensor           # [T, N]
    values: Tensor         # [T, N]
    next_values: Tensor    # [T, N]
    rewards: Tensor        # [T, N] (normalised if enabled)
    terminated: Tensor     # [T, N] bool
    episode_end: Tensor    # [T, N] bool
    valid: Tensor          # [T, N] bool
    action_mask: Tensor | None  # [T, N, K] bool or None
    num_steps: int         # env steps consumed (T * N)
    episode_returns: list[float] = field(default_factory=list)   # raw returns of finished episodes
    episode_lengths: list[int] = field(default_factory=list)
    last_obs: Tensor | None = None   # [N, obs_dim] the observation after the last step (RND's s_{T})
    extra_obs: Tensor | None = None  # [T, N, D] info[extra_obs_key] per step (e.g. post-decision obs)
