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
:class:`policyopt.algos.grpo.LMPolicyGradient`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic

from policyopt.algos.grpo import GRPOConfig, LMPolicyGradient, build_parts
from policyopt.runtime.config import configclass


@configclass
class ReMaxConfig(GRPOConfig):
    """GRPO core with the greedy-completion baseline, one on-policy step, KL in the reward."""

    advantage: Literal["remax"] = "remax"
    """Greedy-completion baseline (fixed for this algorithm)."""
    kl_in: Literal["loss", "reward"] = "reward"
    """ReMax subtracts the KL penalty from the reward."""
    epochs: Annotated[int, pydantic.Field(ge=1)] = 1
    """One pass: ReMax is a REINFORCE method."""


def build(run_config, run_dir):
    """Registry builder for ``algo: remax`` (the collector adds greedy completions)."""
    return build_parts(run_config)


ReMax = LMPolicyGradient
__all__ = ["ReMax", "ReMaxConfig", "build"]
