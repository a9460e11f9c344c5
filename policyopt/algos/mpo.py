"""MPO: Mixed Preference Optimization (Wang et al., 2024, "Mixed Preference Optimization:
Reinforcement Learning with Data Selection and Better Reference Model").

1. A reward model scores every pair; its margin :math:`m = r(y_c) - r(y_r)` splits the data: the
   ``easy_fraction`` of pairs with the largest margins are *easy* (clean, clearly separated), the rest
   *hard* (ambiguous or mislabelled).
2. **DPO on the easy pairs** (``dpo_updates`` updates, reference log-probs cached once).
3. **Online RL on the hard prompts** (the GRPO family of :mod:`policyopt.algos.grpo`, rewards from
   the same reward model) with the **DPO model as the reference** of the KL penalty: at the switch,
   the frozen reference is overwritten with the DPO weights (and saved in checkpoints from then on).

One ``Algorithm`` (:class:`MPO`) and one collector (:class:`MPOCollector`) run both stages through the
shared ``Trainer``: the collector serves ``dpo_updates`` preference batches, then text rollouts; the
algorithm dispatches on the batch type. Resume is exact in either stage.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

import numpy as np
import pydantic

from policyopt.core.config import configclass


@configclass
class MPOConfig:
    sft_warmup_updates: Annotated[int, pydantic.Field(ge=0)] = 0
    """First SFT the model this many updates on behaviour completions (see ``policyopt.algos.dpo``)."""
    synthetic: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Fields of :class:`policyopt.data.preference.SyntheticConfig` (pairs, prompts, truth)."""
    reward: Literal["truth", "reward_model"] = "reward_model"
    """Margins and RL rewards from the synthetic truth's reward, or from a reward model trained first."""
    rm_updates: Annotated[int, pydantic.Field(ge=1)] = 60
    """Reward-model updates (batches of ``batch_size`` pairs) before the split."""
    rm_learning_rate: Annotated[float, pydantic.Field(gt=0)] = 3e-3
    """Reward-model learning rate."""
    easy_fraction: Annotated[float, pydantic.Field(gt=0, lt=1)] = 0.5
    """Fraction of pairs (largest reward margins) used for DPO; the rest are hard prompts for RL."""
    dpo_updates: Annotated[int, pydantic.Field(ge=1)] = 10
    """DPO updates on the easy pairs before switching to online RL."""
    batch_size: Annotated[int, pydantic.Field(ge=1)] = 32
    """Pairs per DPO update (and per reward-model update)."""
    beta: Annotated[float, pydantic.Field(gt=0)] = 0.1
    """DPO beta."""
    dpo_learning_rate: Annotated[float, pydantic.Field(gt=0)] = 2e-3
    """DPO learning rate."""
    rl: dict[str, Any] = dataclasses.field(default_factory=lambda: {"kl_coef": 0.05, "learning_rate": 1e-3})
    """Fields of :class:`policyopt.algos.grpo.GRPOConfig` for the RL stage (``source`` is ignored)."""
    eval: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Fields of :class:`policyopt.eval.preference.WinRateConfig`."""


def split_by_margin(margins: np.ndarray, easy_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(easy, hard)`` row indices: the ``easy_fraction`` largest margins are easy (ties kept together
    by a stable sort), the rest hard."""
    order = np.argsort(-np.asarray(margins), kind="stable")
    n_easy = max(1, min(len(order) - 1, int(round(easy_fraction * len(order)))))
    return np.sort(order[:n_easy]), np.sort(order[n_easy:])


class MPO:
    """DPO updates on ``PreferencePairs``, policy-gradient updates on ``TextRollout`` s; the first
    rollout switches the RL reference to the current (DPO) weights."""

    def __init__(self, dpo: Any, rl: Any, policy: Any):
        if policy.reference_model is None:
            raise ValueError("MPO: the RL stage needs a frozen reference (kl_coef > 0 or track_kl)")
        self.dpo, self.rl, self.policy, self.switched = dpo, rl, policy, False
        self.split_info: dict[str, float] = {}

    def update(self, batch: Any) -> dict[str, float]:
        from policyopt.data.preference import PreferencePairs

        if isinstance(batch, PreferencePairs):
            return {f"dpo/{k}": v for k, v in self.dpo.update(batch).items()}
        if not self.switched:
            self.policy.sync_reference()
            self.switched = True
        return self.rl.update(batch)

    def state_dict(self) -> dict[str, Any]:
        out = {"dpo": self.dpo.state_dict(), "rl": self.rl.state_dict(), "switched": self.switched}
        if self.switched:
            out["reference"] = {k: v.detach().clone() for k, v in self.policy.reference_model.state_dict().items()}
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dpo.load_state_dict(state["dpo"])
        self.rl.load_state_dict(state["rl"])
        self.switched = bool(state["switched"])
        if self.switched:
            self.policy.reference_model.load_state_dict(state["reference"])


__all__ = ["MPO", "MPOConfig", "split_by_margin"]
