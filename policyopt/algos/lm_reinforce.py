r"""REINFORCE for language models with a running-mean reward baseline.

Williams, 1992, "Simple Statistical Gradient-Following Algorithms for Connectionist Reinforcement
Learning". The baseline is a bias-corrected exponential moving average of past batch-mean rewards,
taken *before* the current batch (:func:`policyopt.losses.group.running_mean_advantages`); it is
part of the algorithm's checkpointed state. Every completion is its own sample, so
``completions_per_prompt`` may be 1. One on-policy step per block. A preset of
:class:`policyopt.algos.grpo.GRPO`.
"""

from __future__ import annotations

from typing import Literal

from policyopt.algos.grpo import GRPO, GRPOConfig
from policyopt.core.config import configclass


@configclass
class LMReinforceConfig(GRPOConfig):
    """GRPO core with a running-mean baseline and the KL penalty (if any) in the reward."""

    advantage: Literal["running_mean"] = "running_mean"
    """Running-mean baseline (fixed for this algorithm)."""
    kl_in: Literal["loss", "reward"] = "reward"
    """REINFORCE subtracts the KL penalty from the reward."""


class LMReinforce(GRPO):
    """REINFORCE for LMs: the GRPO core with a running-mean baseline (Williams, 1992).

    ``LMReinforce(LMReinforceConfig(...), policy)``; everything else is :class:`~policyopt.algos.grpo.GRPO`."""

    config_cls = LMReinforceConfig


__all__ = ["LMReinforce", "LMReinforceConfig"]
