"""Online and self-play preference optimisation: fresh samples judged by an oracle or a reward model.

Each update samples ``G`` completions for each of ``P`` prompts from the *current* policy
(:class:`OnlinePairCollector`), asks a judge for the ``[P, G, G]`` matrix of preference
probabilities, and takes one step of ``method`` (losses from :mod:`policyopt.losses.preference`):

============== ============================================================================= ===
``online_dpo`` DPO on the (winner, loser) of each group, as labelled by the judge                G=2
               (online / on-policy DPO; Guo et al., 2024, "Direct Language Model Alignment from
               Online AI Feedback")
``online_ipo`` IPO with the judge's soft label :math:`p` (Calandriello et al., 2024)              G=2
``spo``        self-play: reward = win rate against the other samples of the group               G>=2
               (:func:`~policyopt.losses.preference.win_rate_rewards`), REINFORCE with the group
               mean as baseline (Swamy et al., 2024, "A Minimaximalist Approach to RLHF")
``inpo``       INPO's loss against the previous iterate :math:`\\pi_t`, refreshed every            G=2
               ``iteration_updates`` updates (Zhang et al., 2024)
``egpo``       online IPO with extragradient steps (plain SGD, ``learning_rate``; Zhou et al.,   G=2
               2025, "Extragradient Preference Optimization")
============== ============================================================================= ===

The judge is any object with ``preference(prompts, a, b) -> [B]`` probabilities:
:class:`TruthJudge` (a known :class:`~policyopt.data.preference.GroundTruth`, possibly intransitive)
or :class:`RewardJudge` (any ``RewardFn``, e.g. a trained reward model from
:func:`policyopt.algos.reward_model.as_reward_fn`, turned into Bradley-Terry probabilities).
SPO and INPO/EGPO need no transitive structure, so they stay sound on cyclic preferences.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import pydantic
import torch

from policyopt.core.config import configclass
from policyopt.data.preference import OnlineGroups
from policyopt.lm.policy import frozen_copy
from policyopt.losses import preference as L
from policyopt.nets.optim import optimizer_step


@configclass
class OnlinePrefConfig:
    method: Literal["online_dpo", "online_ipo", "spo", "inpo", "egpo"] = "online_dpo"
    """Objective (see the module docstring)."""
    beta: Annotated[float, pydantic.Field(gt=0)] = 0.1
    """DPO's beta; IPO/EGPO's tau; INPO's eta."""
    inpo_tau: Annotated[float, pydantic.Field(gt=0)] = 0.05
    """INPO: KL strength towards the reference (0 < tau <= eta = beta)."""
    iteration_updates: Annotated[int, pydantic.Field(ge=1)] = 5
    """INPO: updates per iteration (the previous iterate pi_t is refreshed after this many)."""
    spo_kl_coef: Annotated[float, pydantic.Field(ge=0)] = 0.0
    """SPO: coefficient of a k1 KL penalty to the reference in the reward."""
    prompts_per_step: Annotated[int, pydantic.Field(ge=1)] = 16
    """Prompts sampled per update."""
    completions_per_prompt: Annotated[int, pydantic.Field(ge=2)] = 2
    """Completions per prompt (G); pairwise methods use exactly 2."""
    temperature: Annotated[float, pydantic.Field(gt=0)] = 1.0
    """Sampling temperature."""
    max_new_tokens: Annotated[int, pydantic.Field(ge=0)] = 0
    """Generation budget (0: the synthetic truth's longest completion)."""
    learning_rate: Annotated[float, pydantic.Field(gt=0)] = 1e-3
    """AdamW learning rate (EGPO: the plain extragradient step size)."""
    max_grad_norm: Annotated[float, pydantic.Field(gt=0)] | None = 1.0
    """Clip the global gradient norm (None: no clipping)."""
    judge: Literal["truth", "truth_reward"] = "truth"
    """CLI judge: the synthetic preference oracle, or its reward through Bradley-Terry (a RewardFn)."""
    sft_warmup_updates: Annotated[int, pydantic.Field(ge=0)] = 0
    """First SFT the model this many updates on behaviour completions (see ``policyopt.algos.dpo``)."""
    synthetic: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Fields of :class:`policyopt.data.preference.SyntheticConfig` (prompts and truth)."""
    eval: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Fields of :class:`policyopt.eval.preference.WinRateConfig`."""


MethodName = Literal["online_dpo", "online_ipo", "spo", "inpo", "egpo"]


@configclass
class SPOConfig(OnlinePrefConfig):
    """SPO preset of :class:`OnlinePrefConfig` (groups of 4)."""

    method: MethodName = "spo"
    """Objective (see the module docstring)."""
    completions_per_prompt: Annotated[int, pydantic.Field(ge=2)] = 4
    """Completions per prompt (G)."""


@configclass
class INPOConfig(OnlinePrefConfig):
    """INPO preset of :class:`OnlinePrefConfig`."""

    method: MethodName = "inpo"
    """Objective (see the module docstring)."""


@configclass
class EGPOConfig(OnlinePrefConfig):
    """EGPO preset of :class:`OnlinePrefConfig` (plain SGD extragradient steps need a larger step)."""

    method: MethodName = "egpo"
    """Objective (see the module docstring)."""
    learning_rate: Annotated[float, pydantic.Field(gt=0)] = 0.05
    """Extragradient step size (plain SGD)."""


# ------------------------------------------------------------------------------------------ judges


# --------------------------------------------------------------------------------------- collector


# --------------------------------------------------------------------------------------- algorithm


def _seq_logps(model: torch.nn.Module, batch: OnlineGroups) -> torch.Tensor:
    from policyopt.algos.dpo import sequence_logps

    return sequence_logps(model, *batch.rows())


class OnlinePreference:
    """``update(OnlineGroups) -> metrics`` for every ``method`` of :class:`OnlinePrefConfig`.

    ``model``: the policy; ``reference``: a frozen model (the starting policy). INPO keeps a frozen
    copy of the previous iterate. Owns the optimizer (AdamW; EGPO uses plain extragradient steps).
    """

    weight_keys = ("model",)
    """Paths in ``state_dict()`` of the learned weights (what ``--init-from`` copies from another run)."""

    batch_geometry = ("prompts_per_step", "completions_per_prompt")

    def __init__(self, config: OnlinePrefConfig, model: torch.nn.Module, reference: torch.nn.Module):
        pairwise = config.method != "spo"
        if pairwise and config.completions_per_prompt != 2:
            raise ValueError(f"method {config.method!r} is pairwise: completions_per_prompt must be 2")
        if config.method == "inpo" and config.inpo_tau > config.beta:
            raise ValueError(f"INPO needs inpo_tau <= beta (eta), got {config.inpo_tau} > {config.beta}")
        self.config, self.model, self.reference = config, model, reference.eval()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate)
        self.previous = frozen_copy(model) if config.method == "inpo" else None
        self.num_updates = 0

    def _pair_terms(self, batch: OnlineGroups) -> tuple[torch.Tensor, ...]:
        """Policy and reference log-probs of rows 0 and 1 of each group, and ``p = P(y_0 > y_1)``."""
        lp = _seq_logps(self.model, batch).reshape(-1, 2)
        with torch.no_grad():
            ref = _seq_logps(self.reference, batch).reshape(-1, 2)
        return lp[:, 0], lp[:, 1], ref[:, 0], ref[:, 1], batch.preferences[:, 0, 1]

    def loss(self, batch: OnlineGroups) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        if c.method == "spo":
            return self._spo_loss(batch)
        pa, pb, ra, rb, p = self._pair_terms(batch)
        if c.method in ("online_ipo", "egpo"):
            return L.online_ipo_loss(pa, pb, ra, rb, p, c.beta).mean(), {"stats/pref_mean": float(p.mean())}
        a_wins = (p > 0.5)
        decided = (p != 0.5).float()
        pc, pr = torch.where(a_wins, pa, pb), torch.where(a_wins, pb, pa)
        rc, rr = torch.where(a_wins, ra, rb), torch.where(a_wins, rb, ra)
        if c.method == "online_dpo":
            per = L.dpo_loss(pc, pr, rc, rr, c.beta)
        else:
            with torch.no_grad():
                prev = _seq_logps(self.previous, batch).reshape(-1, 2)
            qc, qr = torch.where(a_wins, prev[:, 0], prev[:, 1]), torch.where(a_wins, prev[:, 1], prev[:, 0])
            per = L.inpo_loss(pc, pr, rc, rr, qc, qr, eta=c.beta, tau=c.inpo_tau)
        loss = (per * decided).sum() / decided.sum().clamp_min(1.0)
        return loss, {"stats/decided_frac": float(decided.mean())}

    def _spo_loss(self, batch: OnlineGroups) -> tuple[torch.Tensor, dict[str, float]]:
        c, g = self.config, self.config.completions_per_prompt
        reward = L.win_rate_rewards(batch.preferences).reshape(-1)                     # [P*G]
        lp = _seq_logps(self.model, batch)
        if c.spo_kl_coef > 0:
            with torch.no_grad():
                reward = reward - c.spo_kl_coef * (lp.detach() - _seq_logps(self.reference, batch))
        adv = reward.reshape(-1, g)
        adv = (adv - adv.mean(1, keepdim=True)).reshape(-1)
        return -(adv * lp).mean(), {"reward/win_rate_mean": float(reward.mean())}

    def _grads(self, batch: OnlineGroups) -> list[torch.Tensor]:
        loss, _ = self.loss(batch)
        grads = torch.autograd.grad(loss, self.params)
        limit = self.config.max_grad_norm
        if limit is not None:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x) for x in grads]))
            grads = [x * min(1.0, limit / (float(norm) + 1e-6)) for x in grads]
        return list(grads)

    def _extragradient(self, batch: OnlineGroups) -> None:
        def grad_at(values: Sequence[torch.Tensor]) -> list[torch.Tensor]:
            with torch.no_grad():
                for p, v in zip(self.params, values):
                    p.copy_(v)
            return self._grads(batch)

        start = [p.detach().clone() for p in self.params]
        new = L.extragradient_step(start, grad_at, self.config.learning_rate)
        with torch.no_grad():
            for p, v in zip(self.params, new):
                p.copy_(v)

    def update(self, batch: OnlineGroups) -> dict[str, float]:
        self.model.train()
        c = self.config
        loss, stats = self.loss(batch)
        if c.method == "egpo":
            self._extragradient(batch)
            norm = 0.0
        else:
            norm = float(optimizer_step(self.optimizer, self.params, loss, c.max_grad_norm))
        self.num_updates += 1
        if self.previous is not None and self.num_updates % c.iteration_updates == 0:
            self.previous.load_state_dict(self.model.state_dict())
        return {f"loss/{c.method}": float(loss.detach()), "stats/grad_norm": norm, **stats}

    def state_dict(self) -> dict[str, Any]:
        out = {"model": {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad},
               "optimizer": self.optimizer.state_dict(), "num_updates": self.num_updates}
        if self.previous is not None:
            out["previous"] = {k: v.detach().clone() for k, v in self.previous.state_dict().items()}
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from policyopt.algos.dpo import load_trainable

        load_trainable(self.model, state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_updates = int(state["num_updates"])
        if self.previous is not None:
            self.previous.load_state_dict(state["previous"])


__all__ = ["EGPOConfig", "INPOConfig", "OnlinePrefConfig", "OnlinePreference", "SPOConfig"]
