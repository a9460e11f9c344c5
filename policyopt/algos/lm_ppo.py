r"""PPO with a learned critic for language models (the RLHF recipe).

Schulman et al., 2017, "Proximal Policy Optimization Algorithms"; as used for language models by
Ziegler et al., 2019, "Fine-Tuning Language Models from Human Preferences" and Ouyang et al., 2022,
"Training language models to follow instructions with human feedback". Per generation block:

1. per-token rewards :math:`r_t = -\beta\,\hat{KL}_t + [t = \text{last}]\, r` (sequence reward on the
   last token, :func:`policyopt.losses.policy_lm.kl_token_rewards`);
2. a critic (a separate copy of the initial transformer body plus a zero-initialised scalar head)
   gives :math:`V_t` at every completion token; token-level GAE
   (:func:`policyopt.losses.policy_lm.token_gae`) gives advantages and returns;
3. ``epochs`` x ``minibatches`` steps of the clipped surrogate
   (:func:`~policyopt.losses.policy_lm.lm_policy_loss` with ``[B, T]`` advantages) plus
   ``vf_coef`` x the clipped value loss (:func:`policyopt.losses.value.value_loss`).

Everything else (collector, reward shaping, masks, reference, logging) is shared with the GRPO core
(:class:`policyopt.algos.grpo.GRPO`, used by composition). Memory: policy + critic
(+ a frozen reference when the KL is tracked), the cost ReMax and GRPO avoid.
"""

from __future__ import annotations

import copy
import time
from typing import Annotated, Any, Literal

import pydantic
import torch

from policyopt.algos.grpo import GRPO, GRPOConfig
from policyopt.algos.lm_forward import grouped_hidden_states
from policyopt.core.config import configclass
from policyopt.core.memory import peak_rss_mb
from policyopt.data.text import PreparedBlock, TextRollout
from policyopt.lm.logprobs import body_and_head, position_ids
from policyopt.losses.advantages import normalize
from policyopt.losses.kl import kl_estimate
from policyopt.losses.policy_lm import kl_token_rewards, lm_policy_loss, token_gae
from policyopt.losses.value import value_loss
from policyopt.nets.optim import optimizer_step


@configclass
class LMPPOConfig(GRPOConfig):
    """PPO with a critic: token-level GAE, value clipping, KL as a per-token reward."""

    advantage: Literal["gae"] = "gae"
    """Token-level GAE from the learned critic (fixed for this algorithm)."""
    kl_in: Literal["reward"] = "reward"
    """The KL penalty is a per-token reward (RLHF)."""
    epochs: Annotated[int, pydantic.Field(ge=1)] = 2
    """PPO epochs per generation block."""
    minibatches: Annotated[int, pydantic.Field(ge=1)] = 2
    """Minibatches per epoch."""
    gamma: Annotated[float, pydantic.Field(ge=0, le=1)] = 1.0
    """Discount over tokens."""
    lam: Annotated[float, pydantic.Field(ge=0, le=1)] = 0.95
    """GAE lambda."""
    vf_coef: Annotated[float, pydantic.Field(ge=0)] = 0.5
    """Weight of the value loss."""
    value_clip: Annotated[float, pydantic.Field(gt=0)] | None = 0.2
    """Clip the critic's change per update around its old values (None: no clipping)."""
    critic_learning_rate: Annotated[float, pydantic.Field(gt=0)] = 1e-3
    """AdamW learning rate of the critic."""
    whiten_advantages: bool = True
    """Normalise advantages to zero mean / unit std over the block's tokens."""


class LMPPO:
    """``update(TextRollout) -> metrics``: PPO with a separate critic (see the module docstring)."""

    weight_keys = ("core.policy", "critic", "value_head")
    """Paths in ``state_dict()`` of the learned weights (what ``--init-from`` copies from another run)."""

    batch_geometry = ("collect",)

    def __init__(self, config: LMPPOConfig, policy: Any, total_updates: int = 1, seed: int = 0):
        self.config, self.policy = config, policy
        self.core = GRPO(config, policy, total_updates, seed)
        body, _ = body_and_head(policy.model)
        self.critic_body = copy.deepcopy(body).train()
        for p in self.critic_body.parameters():
            p.requires_grad_(True)
        self.value_head = torch.nn.Linear(body.config.hidden_size, 1)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)
        params = list(self.critic_body.parameters()) + list(self.value_head.parameters())
        self.critic_optimizer = torch.optim.AdamW(params, lr=config.critic_learning_rate, betas=tuple(config.betas))

    def values(self, batch: TextRollout, rows: Any = slice(None)) -> torch.Tensor:
        """Critic values ``[b, N]``: V at the state before each completion token (shared prompts run once)."""
        if self.config.share_prompt_forward:
            hidden = grouped_hidden_states(self.critic_body, batch.prompt_ids[rows], batch.prompt_mask[rows],
                                           batch.completion_ids[rows], batch.completion_mask[rows],
                                           batch.group_index[rows])
            if hidden is not None:
                return self.value_head(hidden).squeeze(-1)
        ids = torch.cat([batch.prompt_ids[rows], batch.completion_ids[rows]], 1)
        mask = torch.cat([batch.prompt_mask[rows], batch.completion_mask[rows]], 1)
        hidden = self.critic_body(input_ids=ids, attention_mask=mask.long(), position_ids=position_ids(mask),
                                  use_cache=False).last_hidden_state
        p, n = batch.prompt_ids.shape[1], batch.completion_ids.shape[1]
        return self.value_head(hidden[:, p - 1: p + n - 1]).squeeze(-1)

    def prepare(self, batch: TextRollout) -> PreparedBlock:
        c, core = self.config, self.core
        mask = core.loss_mask(batch)
        old = core.old_logprobs(batch)
        ref = core.reference(batch)
        beta = core.kl_coef() if ref is not None else 0.0
        rewards = torch.nan_to_num(core.shaped_rewards(batch))  # unscorable rows are out of the mask
        token_rewards = kl_token_rewards(rewards, old, ref if ref is not None else old, mask, beta, c.kl_estimator)
        with torch.no_grad():
            old_values = self.values(batch)
        adv, returns = token_gae(token_rewards, old_values, mask, c.gamma, c.lam)
        if c.whiten_advantages and bool(mask.any()):
            adv = normalize(adv, mask)   # the one advantage normaliser (classic PPO's), over the trained tokens
        return PreparedBlock(mask, old, ref, adv, beta, returns=returns, old_values=old_values)

    def update(self, batch: TextRollout) -> dict[str, float]:
        t0 = time.perf_counter()
        c = self.config
        self.policy.model.train()
        prep = self.prepare(batch)
        sums: dict[str, float] = {}
        steps = 0
        for _ in range(c.epochs):
            for rows in self.core.minibatches(batch.rewards.shape[0]):
                for k, v in self.step(batch, prep, rows).items():
                    sums[k] = sums.get(k, 0.0) + v
                steps += 1
        self.core.num_updates += 1
        metrics = dict(batch.metrics)
        metrics.update({k: v / max(1, steps) for k, v in sums.items()})
        metrics.update({"stats/kl_coef": prep.beta, "time/learn_s": time.perf_counter() - t0,
                        "mem/peak_rss_mb": peak_rss_mb()})
        if prep.ref is not None:
            kl = kl_estimate(prep.old, prep.ref, "k3")[prep.mask]   # docs/metrics.md: stats/kl_ref
            metrics["stats/kl_ref"] = float(kl.mean()) if kl.numel() else 0.0
        return metrics

    def step(self, batch: TextRollout, prep: PreparedBlock, rows: torch.Tensor) -> dict[str, float]:
        c = self.config
        out = self.core.logprobs(batch, rows, with_entropy=True)
        p = prep.rows(rows)
        mask = p.mask
        pg, m = lm_policy_loss(out.logprobs, p.old, p.adv, mask, clip_low=c.clip_low,
                               clip_high=c.clip_high, aggregation=c.aggregation,
                               max_length=c.collect.max_new_tokens, dual_clip=c.dual_clip)
        values = self.values(batch, rows)
        vloss = value_loss(values, p.returns, p.old_values, c.value_clip, mask)
        self.critic_optimizer.zero_grad(set_to_none=True)
        grad_norm = self.core.apply(pg + c.vf_coef * vloss)  # backward reaches the critic too
        critic_params = [p for g in self.critic_optimizer.param_groups for p in g["params"]]
        optimizer_step(self.critic_optimizer, critic_params, None, c.max_grad_norm)  # grads from the backward above
        entropy = (out.entropy * mask).sum() / mask.sum().clamp_min(1)
        return {"loss/policy": float(pg.detach()), "loss/value": float(vloss.detach()),
                "stats/clip_frac": float(m["clip_fraction"]), "stats/approx_kl": float(m["approx_kl_old"]),
                "stats/entropy": float(entropy.detach()), "stats/grad_norm": grad_norm,
                "stats/value_mean": float((values.detach() * mask).sum() / mask.sum().clamp_min(1))}

    def state_dict(self) -> dict[str, Any]:
        return {"core": self.core.state_dict(),
                "critic": {k: v.detach().clone() for k, v in self.critic_body.state_dict().items()},
                "value_head": {k: v.detach().clone() for k, v in self.value_head.state_dict().items()},
                "critic_optimizer": self.critic_optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.core.load_state_dict(state["core"])
        self.critic_body.load_state_dict(state["critic"])
        self.value_head.load_state_dict(state["value_head"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])


__all__ = ["LMPPO", "LMPPOConfig"]
