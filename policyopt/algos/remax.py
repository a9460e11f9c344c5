r"""ReMax: REINFORCE with the reward of the greedy completion as the baseline.

Li et al., 2024, "ReMax: A Simple, Effective, and Efficient Reinforcement Learning Method for
Aligning Large Language Models". For each prompt the collector also decodes one greedy completion
:math:`\bar y` (``TextCollector(greedy_baseline=True)``) and

.. math:: A_i = r(x, y_i) - r(x, \bar y)

(:func:`policyopt.losses.group.remax_advantages`; an unscorable greedy completion gives its group
advantage 0). One on-policy step per block, no critic and no value model: the paper's claim is
about half of PPO's memory and twice its speed (``benchmarks/lm_vs_trl.py`` measures ours). The
paper samples one completion per prompt; ``completions_per_prompt`` > 1 shares the greedy baseline.
A KL penalty, if any, goes into the reward as in the paper. A preset of
:class:`policyopt.algos.grpo.GRPO`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic

from policyopt.algos.grpo import GRPO, GRPOConfig
from policyopt.core.config import configclass


@configclass
class ReMaxConfig(GRPOConfig):
    """GRPO core with the greedy-completion baseline, one on-policy step, KL in the reward."""

    advantage: Literal["remax"] = "remax"
    """Greedy-completion baseline (fixed for this algorithm)."""
    kl_in: Literal["loss", "reward"] = "reward"
    """ReMax subtracts the KL penalty from the reward."""
    epochs: Annotated[int, pydantic.Field(ge=1)] = 1
    """One pass: ReMax is a REINFORCE method."""


class ReMax(GRPO):
    """ReMax: the GRPO core with the greedy completion's reward as the baseline (Li et al., 2024).

    ``ReMax(ReMaxConfig(...), policy)``; everything else is :class:`~policyopt.algos.grpo.GRPO`."""

    config_cls = ReMaxConfig


__all__ = ["ReMax", "ReMaxConfig"]
