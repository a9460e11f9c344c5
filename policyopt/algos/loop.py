r"""LOOP: PPO with leave-one-out advantages and no critic, on multi-turn text-environment episodes.

Chen et al., 2025, "Reinforcement Learning for Long-Horizon Interactive LLM Agents". For each task
the policy plays G episodes in a :class:`~policyopt.lm.textenv.TextEnv` (here the calculator tool
environment: the model may call ``<calc>...</calc>`` and read ``<result>...</result>`` before it
answers); every episode's return gets the leave-one-out advantage over the other G - 1 episodes of
the same task (:func:`policyopt.losses.group.rloo_advantages`), which is applied to every token the
policy produced (environment tokens are masked out of the loss), and the update is PPO's per-token
clipped objective over several epochs/minibatches. No critic and no reference copy: one model in
memory (``track_kl: false``, ``kl_coef: 0``). Token-in/token-out rollouts (``policyopt.lm.textenv``)
mean the trained tokens are exactly the sampled ones. A preset of
:class:`policyopt.algos.grpo.GRPO`; the environment is always the calculator here.
"""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic

from policyopt.algos.grpo import GRPO, GRPOConfig
from policyopt.core.config import configclass


@configclass
class LOOPConfig(GRPOConfig):
    """GRPO core as LOOP: leave-one-out advantages, PPO epochs, one model copy, multi-turn episodes."""

    advantage: Literal["rloo"] = "rloo"
    """Leave-one-out baseline over the G episodes of a task (fixed for this algorithm)."""
    scale_by_std: bool = False
    """LOOP uses unscaled leave-one-out advantages."""
    epochs: Annotated[int, pydantic.Field(ge=1)] = 2
    """PPO epochs per block."""
    minibatches: Annotated[int, pydantic.Field(ge=1)] = 2
    """Minibatches per epoch."""
    aggregation: Literal["sequence_mean", "token_mean", "fixed_length"] = "token_mean"
    """Every policy token weighs the same (long multi-turn episodes are not down-weighted)."""
    track_kl: bool = False
    """No reference copy: LOOP keeps one model in memory."""


class LOOP(GRPO):
    """LOOP: the GRPO core as PPO with leave-one-out advantages, no critic, multi-turn episodes (Chen et al., 2025).

    ``LOOP(LOOPConfig(...), policy)``; everything else is :class:`~policyopt.algos.grpo.GRPO`."""

    config_cls = LOOPConfig
    text_env = "calculator"
    """The text environment LOOP always plays (the builder sets ``source.env`` to it)."""


__all__ = ["LOOP", "LOOPConfig"]
