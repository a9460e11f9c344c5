r"""RLOO: REINFORCE with a leave-one-out baseline over the G completions of a prompt.

Kool et al., 2019, "Buy 4 REINFORCE Samples, Get a Baseline for Free!"; Ahmadian et al., 2024,
"Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback in LLMs".
Each completion's baseline is the mean reward of the *other* completions of its prompt,

.. math:: A_i = r_i - \frac{1}{G-1}\sum_{j \ne i} r_j ,

(:func:`policyopt.losses.group.rloo_advantages`), and the update is one on-policy REINFORCE step
(ratio exactly 1; ``epochs``/``minibatches`` > 1 turn it into a clipped PPO-style update, which is
what LOOP does, :mod:`policyopt.algos.loop`). As in the RLHF paper, a KL penalty to the reference
policy, if any, is subtracted from the reward (``kl_in: reward``). A thin preset of the shared core
:class:`policyopt.algos.grpo.GRPO`.
"""

from __future__ import annotations

from typing import Literal

from policyopt.algos.grpo import GRPO, GRPOConfig
from policyopt.core.config import configclass


@configclass
class RLOOConfig(GRPOConfig):
    """GRPO core with the leave-one-out estimator, no std scaling, KL in the reward."""

    advantage: Literal["rloo"] = "rloo"
    """Leave-one-out baseline (fixed for this algorithm)."""
    scale_by_std: bool = False
    """RLOO uses raw leave-one-out differences; True divides by the group std (floored)."""
    kl_in: Literal["loss", "reward"] = "reward"
    """RLOO folds the KL penalty into the sequence reward."""


class RLOO(GRPO):
    """RLOO: the GRPO core with leave-one-out advantages and the KL folded into the reward (Ahmadian et al., 2024).

    ``RLOO(RLOOConfig(...), policy)``; everything else is :class:`~policyopt.algos.grpo.GRPO`."""

    config_cls = RLOOConfig


__all__ = ["RLOO", "RLOOConfig"]
