r"""The policy-gradient core of online language-model RL, and GRPO with the options the field uses.

One algorithm, :class:`GRPO`, configured along five axes; every named method is a
setting of them (``docs/lm_rl.md`` has the table):

==================  ===========================================================================
advantage           ``group`` (GRPO; ``scale_by_std=False``: Dr.GRPO), ``rloo`` (RLOO, LOOP),
                    ``remax`` (greedy-completion baseline), ``running_mean`` (REINFORCE)
ratio_level         ``token`` (PPO/GRPO), ``sequence`` (GSPO), ``sequence_token`` (GSPO-token)
clipping            ``clip_low`` / ``clip_high`` (DAPO clip-higher), ``dual_clip``
aggregation         ``sequence_mean`` (GRPO), ``token_mean`` (DAPO), ``fixed_length`` (Dr.GRPO)
KL                  ``kl_coef`` with ``kl_estimator`` k1/k2/k3, ``kl_in`` loss or reward,
                    ``kl_schedule`` fixed or dynamic (GRPO-D, "OThink-MR1")
==================  ===========================================================================

plus ``epochs`` x ``minibatches`` per generation block (1 x 1 = one strictly on-policy step, the
ratio is then exactly 1 and the gradient is REINFORCE's), DAPO's dynamic sampling (in the collector)
and overlong filtering / soft penalty, and the reward shaping of GRPO-S (difficulty-scaled
advantages), OTC (tool-call-cost reward), length/CoT penalties and selective loss masking (AdaCoT).

Paper: Shao et al., 2024, "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open
Language Models" (GRPO). The loss is :func:`policyopt.losses.policy_lm.lm_policy_loss`, the
advantages come from :mod:`policyopt.losses.group`, the shaping from :mod:`policyopt.losses.shaping`.

The update of one block of ``B`` completions::

    rewards [B]  --shaping-->  (KL in reward)  --estimator(groups)-->  advantages [B]
    for epoch, minibatch:  logp [B, N] (chunked forward)  ->  lm_policy_loss  ->  AdamW step

Unscorable completions (reward guard) are masked out of the advantage statistics *and* of the loss
(their rows leave the token mask), never scored 0.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Annotated, Any, Literal

import pydantic
import torch

from policyopt.algos.lm_forward import grouped_completion_logprobs
from policyopt.core.config import configclass
from policyopt.core.memory import peak_rss_mb
from policyopt.data.text import FINISH_LENGTH, CollectConfig, PreparedBlock, TextRollout
from policyopt.lm.logprobs import completion_logprobs
from policyopt.losses import group as G
from policyopt.losses import shaping
from policyopt.losses.policy_lm import dynamic_kl_coef, kl_penalized_rewards, lm_policy_loss, selective_loss_mask
from policyopt.nets.optim import optimizer_step


@configclass
class GRPOConfig:
    """The policy-gradient core; defaults are GRPO (Shao et al., 2024) with one on-policy step."""

    collect: CollectConfig = dataclasses.field(default_factory=CollectConfig)
    """Prompts per step, group size, sampling, dynamic sampling (``policyopt.runtime.text_collector``)."""
    advantage: Literal["group", "rloo", "remax", "running_mean"] = "group"
    """Advantage estimator: GRPO group-relative, RLOO leave-one-out, ReMax greedy baseline, running mean."""
    scale_by_std: bool = True
    """Divide group-relative (or RLOO) advantages by the group std (False: Dr.GRPO)."""
    std_floor: Annotated[float, pydantic.Field(ge=0)] = 1e-3
    """Floor on the group std (prevents the 1/std blow-up of near-tied groups)."""
    baseline_decay: Annotated[float, pydantic.Field(ge=0, lt=1)] = 0.9
    """EMA decay of the running-mean baseline (``advantage: running_mean``)."""
    ratio_level: Literal["token", "sequence", "sequence_token"] = "token"
    """Importance ratio per token (PPO/GRPO) or per sequence (GSPO)."""
    clip_low: Annotated[float, pydantic.Field(ge=0, lt=1)] = 0.2
    """Lower clip range: ratio >= 1 - clip_low."""
    clip_high: Annotated[float, pydantic.Field(ge=0)] | None = None
    """Upper clip range (None: = clip_low; DAPO clip-higher uses 0.28)."""
    dual_clip: Annotated[float, pydantic.Field(gt=1)] | None = None
    """Dual-clip bound c for negative advantages (None: off)."""
    aggregation: Literal["sequence_mean", "token_mean", "fixed_length"] = "sequence_mean"
    """Loss aggregation: per-sequence mean (GRPO), token mean (DAPO), fixed length (Dr.GRPO)."""
    epochs: Annotated[int, pydantic.Field(ge=1)] = 1
    """Passes over each generation block (1 with minibatches=1: strictly on-policy)."""
    minibatches: Annotated[int, pydantic.Field(ge=1)] = 1
    """Gradient steps per pass (the block's completions are shuffled and split)."""
    kl_coef: Annotated[float, pydantic.Field(ge=0)] = 0.0
    """KL(pi || pi_ref) weight beta (the maximum when ``kl_schedule: dynamic``)."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    """Sample estimator of the KL (Schulman, 2020)."""
    kl_in: Literal["loss", "reward"] = "loss"
    """Put the KL penalty in the loss (GRPO) or subtract it from the reward (RLHF/ReMax)."""
    kl_schedule: Literal["fixed", "dynamic"] = "fixed"
    """``dynamic``: GRPO-D's schedule from kl_coef_min to kl_coef over kl_warmup_fraction of training."""
    kl_coef_min: Annotated[float, pydantic.Field(ge=0)] = 0.0
    """Starting KL weight of the dynamic schedule."""
    kl_warmup_fraction: Annotated[float, pydantic.Field(gt=0, le=1)] = 1.0
    """Fraction of training over which the dynamic KL weight moves from min to max."""
    track_kl: bool = True
    """Keep a frozen reference copy to log ``stats/kl_ref`` even when kl_coef is 0 (False: one model copy)."""
    overlong: Literal["none", "filter", "soft"] = "none"
    """Completions cut at max_new_tokens: keep, mask out of the loss (filter), or DAPO's soft penalty."""
    overlong_cache: Annotated[int, pydantic.Field(ge=1)] = 4
    """DAPO soft-penalty ramp length (tokens before the limit where the penalty starts)."""
    length_penalty: Annotated[float, pydantic.Field(ge=0)] = 0.0
    """CoT-cost penalty coef * len / max_new_tokens on correct completions (AdaCoT-style)."""
    tool_call_reward: bool = False
    """OTC-GRPO: reward = correctness * r_tool(number of tool calls vs the group's fewest correct)."""
    otc_c: Annotated[float, pydantic.Field(gt=0)] = 1.0
    """OTC smoothing constant c."""
    difficulty_scaling: bool = False
    """GRPO-S: multiply advantages by difficulty weights 1 + alpha*h + beta*sigmoid(gap/T) (normalised)."""
    difficulty_alpha: float = 1.0
    """GRPO-S weight of data hardness h (1 - the prompt's mean format reward is used as h)."""
    difficulty_beta: float = 1.0
    """GRPO-S weight of the reward gap (1 - group mean correctness)."""
    difficulty_temperature: Annotated[float, pydantic.Field(gt=0)] = 0.25
    """GRPO-S temperature T of the reward-gap sigmoid."""
    mask_token_ids: tuple[int, ...] = ()
    """Selective loss masking (AdaCoT): these token ids never enter the loss."""
    learning_rate: Annotated[float, pydantic.Field(gt=0)] = 1e-4
    """AdamW learning rate."""
    betas: tuple[float, float] = (0.9, 0.99)
    """AdamW betas."""
    weight_decay: Annotated[float, pydantic.Field(ge=0)] = 0.0
    """AdamW weight decay."""
    max_grad_norm: Annotated[float, pydantic.Field(gt=0)] | None = 1.0
    """Global gradient-norm clip (None: off)."""
    token_chunk: Annotated[int, pydantic.Field(ge=1)] = 1024
    """Completion tokens per output-head chunk in the log-prob pass (bounds the logits memory)."""
    share_prompt_forward: bool = True
    """Run each group's shared prompt once in the training/reference forward (``algos.lm_forward``)."""


class GRPO:
    """``update(TextRollout) -> metrics`` for the whole GRPO/RLOO/ReMax/REINFORCE family (see module doc).

    ``policy``: an :class:`~policyopt.lm.policy.LMPolicy`; ``total_updates`` sizes the GRPO-D schedule;
    ``seed`` seeds the minibatch shuffles. Owns the optimizer, the running baseline, the shuffle RNG.
    """

    weight_keys = ("policy",)
    """Paths in ``state_dict()`` of the learned weights (what ``--init-from`` copies from another run)."""

    batch_geometry = ("collect",)

    config_cls: type = GRPOConfig
    """The config this class takes; the presets (RLOO, ReMax, LMReinforce, LOOP) set their own."""

    def __init__(self, config: GRPOConfig, policy: Any, total_updates: int = 1, seed: int = 0):
        if not isinstance(config, self.config_cls):
            raise TypeError(f"{type(self).__name__} takes a {self.config_cls.__name__}, got {type(config).__name__}")
        self.config, self.policy, self.total_updates = config, policy, max(1, total_updates)
        c = config
        needs_ref = c.kl_coef > 0 or c.track_kl
        if needs_ref and not policy.has_lora and policy.reference_model is None:
            policy.freeze_reference()
        self.has_reference = needs_ref
        self.optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=c.learning_rate, betas=tuple(c.betas),
                                           weight_decay=c.weight_decay)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.ema, self.ema_steps = torch.zeros(()), torch.zeros((), dtype=torch.long)
        self.num_updates = 0

    # ----------------------------------------------------------------------------- rewards
    def shaped_rewards(self, batch: TextRollout) -> torch.Tensor:
        """``[B]`` rewards after S-GRPO serial decay, DAPO soft overlong penalty, length penalty and OTC
        (NaN stays NaN)."""
        c, r = self.config, batch.rewards.clone()
        lengths = batch.completion_lengths
        correct = batch.components.get("correct")
        if c.collect.group_mode == "serial":
            if correct is None:
                raise ValueError("serial groups (S-GRPO) need a 'correct' reward component")
            c2d, present, slot = G.groups_from_flat(torch.nan_to_num(correct), batch.group_index)
            decayed = shaping.serial_group_rewards(c2d > 0.5, present).reshape(-1)[slot]
            r = torch.where(batch.scorable, decayed, r)
        if c.overlong == "soft":
            limit = self._max_new_tokens()
            r = r + shaping.overlong_penalty(lengths, limit, min(c.overlong_cache, limit))
        if c.length_penalty > 0:
            ok = correct > 0.5 if correct is not None else None
            r = shaping.length_penalty(r, lengths, self._max_new_tokens(), c.length_penalty, ok)
        if c.tool_call_reward:
            if correct is None:
                raise ValueError("tool_call_reward (OTC) needs a 'correct' reward component")
            fill = torch.nan_to_num(correct)
            calls, groups = batch.num_tool_calls, batch.group_index
            c2d, _, _ = G.groups_from_flat(fill, groups)
            n2d, present, slot = G.groups_from_flat(calls.float(), groups)
            best = shaping.optimal_tool_calls(n2d, c2d > 0.5, present)
            otc = shaping.tool_call_rewards(fill, calls, best[groups], c=c.otc_c)
            r = torch.where(batch.scorable, otc, r)
        return r

    def _max_new_tokens(self) -> int:
        return self.config.collect.max_new_tokens

    def advantages(self, rewards: torch.Tensor, batch: TextRollout) -> torch.Tensor:
        """``[B]`` advantages from the configured estimator over the batch's groups."""
        c, mask, groups = self.config, batch.scorable, batch.group_index
        if c.advantage == "group":
            return G.group_relative_advantages(rewards, mask, groups, c.scale_by_std, c.std_floor)
        if c.advantage == "rloo":
            return G.rloo_advantages(rewards, mask, groups, c.scale_by_std, c.std_floor)
        if c.advantage == "remax":
            if batch.greedy_rewards is None:
                raise ValueError("advantage 'remax' needs greedy rewards: build the TextCollector with greedy_baseline")
            greedy = torch.nan_to_num(batch.greedy_rewards)
            return G.remax_advantages(rewards, greedy, mask, batch.greedy_scorable, groups)
        adv, self.ema, self.ema_steps = G.running_mean_advantages(rewards, self.ema, self.ema_steps, mask,
                                                                  c.baseline_decay)
        return adv

    def difficulty_weights(self, batch: TextRollout) -> torch.Tensor:
        """GRPO-S weights per completion ``[B]`` (hardness from format, gap from correctness)."""
        c = self.config
        correct = batch.components.get("correct", torch.nan_to_num(batch.rewards))
        fmt = batch.components.get("format", torch.ones_like(correct))
        acc2d, present, _ = G.groups_from_flat(torch.nan_to_num(correct), batch.group_index)
        fmt2d, _, _ = G.groups_from_flat(torch.nan_to_num(fmt), batch.group_index)
        n = present.sum(-1).clamp_min(1)
        gap = 1.0 - acc2d.sum(-1) / n
        hard = 1.0 - fmt2d.sum(-1) / n
        w = shaping.difficulty_weights(hard, gap, c.difficulty_alpha, c.difficulty_beta, c.difficulty_temperature)
        return w[batch.group_index]

    # ------------------------------------------------------------------------------ update
    def kl_coef(self) -> float:
        c = self.config
        if c.kl_schedule == "dynamic":
            return dynamic_kl_coef(self.num_updates, self.total_updates, c.kl_coef_min, c.kl_coef,
                                   c.kl_warmup_fraction)
        return c.kl_coef

    def loss_mask(self, batch: TextRollout) -> torch.Tensor:
        c = self.config
        mask = batch.loss_mask & batch.scorable[:, None]
        if c.overlong == "filter":
            mask = mask & (batch.finish_reason != FINISH_LENGTH)[:, None]
        if c.mask_token_ids:
            mask = selective_loss_mask(mask, batch.completion_ids, list(c.mask_token_ids))
        return mask

    def logprobs(self, batch: TextRollout, rows: Any = slice(None), with_entropy: bool = False,
                 model: torch.nn.Module | None = None):
        """Per-token log-probs (and entropy) of ``batch`` rows under ``model`` (default: the policy)."""
        model = self.policy.model if model is None else model
        args = (batch.prompt_ids[rows], batch.prompt_mask[rows], batch.completion_ids[rows],
                batch.completion_mask[rows])
        kwargs = {"temperature": self.config.collect.temperature, "with_entropy": with_entropy,
                  "token_chunk": self.config.token_chunk}
        if self.config.share_prompt_forward:
            return grouped_completion_logprobs(model, *args, batch.group_index[rows], **kwargs)
        return completion_logprobs(model, *args, **kwargs)

    def old_logprobs(self, batch: TextRollout) -> torch.Tensor:
        """Behaviour log-probs: the sampler's, unless truncated sampling makes them differ (recompute)."""
        cc = self.config.collect
        if cc.top_k == 0 and cc.top_p == 1.0:
            return batch.logprobs
        with torch.no_grad():
            return self.logprobs(batch).logprobs

    def reference(self, batch: TextRollout) -> torch.Tensor | None:
        if not self.has_reference:
            return None
        with torch.inference_mode(), self.policy.reference() as ref:
            return self.logprobs(batch, model=ref).logprobs

    def prepare(self, batch: TextRollout) -> PreparedBlock:
        """Everything the gradient steps need: mask, old/ref log-probs, advantages, KL weight."""
        c = self.config
        mask = self.loss_mask(batch)
        old = self.old_logprobs(batch)
        ref = self.reference(batch)
        beta = self.kl_coef()
        rewards = self.shaped_rewards(batch)
        if c.kl_in == "reward" and beta > 0:
            rewards = kl_penalized_rewards(torch.nan_to_num(rewards), old, ref, mask, beta, c.kl_estimator)
            rewards = torch.where(batch.scorable, rewards, torch.nan)
        adv = self.advantages(rewards, batch)
        if c.difficulty_scaling:
            adv = adv * self.difficulty_weights(batch)
        return PreparedBlock(mask, old, ref, adv, beta if c.kl_in == "loss" else 0.0)

    def update(self, batch: TextRollout) -> dict[str, float]:
        t0 = time.perf_counter()
        c = self.config
        self.policy.model.train()
        prep = self.prepare(batch)
        sums: dict[str, float] = {}
        steps = 0
        for _ in range(c.epochs):
            for rows in self.minibatches(batch.rewards.shape[0]):
                out = self.step(batch, prep, rows)
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + v
                steps += 1
        self.num_updates += 1
        metrics = dict(batch.metrics)
        metrics.update({k: v / max(1, steps) for k, v in sums.items()})
        adv = prep.adv[batch.scorable]
        metrics.update({"stats/adv_abs_mean": float(adv.abs().mean()) if adv.numel() else 0.0,
                        "stats/kl_coef": prep.beta if c.kl_in == "loss" else self.kl_coef(),
                        "time/learn_s": time.perf_counter() - t0, "mem/peak_rss_mb": peak_rss_mb()})
        if not self.has_reference:
            metrics.pop("stats/kl_ref", None)
        return metrics

    def minibatches(self, n: int) -> list[torch.Tensor]:
        k = self.config.minibatches
        if k == 1:
            return [torch.arange(n)]
        order = torch.randperm(n, generator=self.generator)
        return [chunk for chunk in order.chunk(k) if chunk.numel()]

    def step(self, batch: TextRollout, prep: PreparedBlock, rows: torch.Tensor) -> dict[str, float]:
        """One gradient step on the completions ``rows``."""
        c = self.config
        out = self.logprobs(batch, rows, with_entropy=True)
        p = prep.rows(rows)
        mask = p.mask
        loss, m = lm_policy_loss(out.logprobs, p.old, p.adv, mask, clip_low=c.clip_low,
                                 clip_high=c.clip_high, ratio_level=c.ratio_level, aggregation=c.aggregation,
                                 max_length=c.collect.max_new_tokens * max(1, c.collect.max_turns
                                                                           if c.collect.tool_env != "none" else 1),
                                 dual_clip=c.dual_clip, ref_logp=p.ref, kl_coef=p.beta,
                                 kl_estimator=c.kl_estimator)
        grad_norm = self.apply(loss)
        entropy = (out.entropy * mask).sum() / mask.sum().clamp_min(1)
        return {"loss/policy": float(loss.detach()), "stats/clip_frac": float(m["clip_fraction"]),
                "stats/approx_kl": float(m["approx_kl_old"]), "stats/ratio_mean": float(m["ratio_mean"]),
                "stats/kl_ref": float(m.get("kl_ref", torch.zeros(()))), "stats/entropy": float(entropy.detach()),
                "stats/grad_norm": grad_norm}

    def apply(self, loss: torch.Tensor) -> float:
        """Backward, clip, AdamW step; returns the pre-clip gradient norm."""
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        return float(optimizer_step(self.optimizer, params, loss, self.config.max_grad_norm))

    # ------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state().clone(), "ema": self.ema.clone(),
                "ema_steps": self.ema_steps.clone(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.ema, self.ema_steps = state["ema"].clone(), state["ema_steps"].clone()
        self.num_updates = int(state["num_updates"])


__all__ = ["GRPOConfig", "GRPO"]
