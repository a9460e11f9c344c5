"""PPO: clipped surrogate, GAE, advantage normalisation, value clipping, entropy bonus,
gradient-norm clipping, learning-rate and clip annealing, optional target-KL early stop.

Schulman et al., 2017, "Proximal Policy Optimization Algorithms" (arXiv:1707.06347); the
implementation details follow Engstrom et al., 2020 and Huang et al., 2022 ("The 37 Implementation
Details of PPO").
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from policyopt.algos.onpolicy import Auxiliary, Learner, NetConfig, estimate, flatten, linear_decay
from policyopt.algos.rnd import RNDBonus, RNDConfig
from policyopt.core.config import configclass
from policyopt.data.rollout import Rollout
from policyopt.losses import normalize, ppo_clip_loss, value_loss
from policyopt.nets.actor_critic import ActionSpec

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[float, Field(gt=0.0)]


@configclass
class PPOConfig:
    learning_rate: Positive = 3e-4
    """Adam learning rate (the start value when ``anneal_lr``)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over the run."""
    num_steps: Annotated[int, Field(gt=0)] = 128
    """Rollout length per env copy; a batch is ``num_steps * env.num_envs`` steps."""
    minibatch_size: Annotated[int, Field(gt=0)] = 256
    """Transitions per gradient step (the last minibatch of an epoch may be smaller)."""
    update_epochs: Annotated[int, Field(gt=0)] = 4
    """Passes over each batch."""
    gamma: Fraction = 0.99
    """Discount factor."""
    gae_lambda: Fraction = 0.95
    """GAE lambda."""
    clip_coef: Positive = 0.2
    """Surrogate clipping epsilon (lower side, and upper side unless ``clip_coef_high`` is set)."""
    clip_coef_high: Positive | None = None
    """Upper clipping epsilon for asymmetric clipping (DAPO's clip-higher); None = symmetric."""
    anneal_clip: bool = False
    """Decay the clipping epsilon linearly to 0 over the run (as RL-Zoo's ``lin_0.2``)."""
    clip_vloss: bool = False
    """Clip the value update around the old value with ``clip_coef_value``."""
    clip_coef_value: Positive = 0.2
    """Value clipping range (used when ``clip_vloss``)."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    ent_coef: Annotated[float, Field(ge=0.0)] = 0.0
    """Entropy bonus coefficient."""
    vf_coef: Annotated[float, Field(ge=0.0)] = 0.5
    """Value-loss coefficient (the value loss is 0.5 * squared error)."""
    max_grad_norm: Positive | None = 0.5
    """Global gradient-norm clip; None disables clipping."""
    target_kl: Positive | None = None
    """Stop the epochs of an update once the approximate KL exceeds this; None = never."""
    adam_eps: Positive = 1e-5
    """Adam epsilon."""
    net: NetConfig = NetConfig()
    """Network architecture."""
    rnd: RNDConfig | None = None
    """Random Network Distillation exploration bonus (Burda et al., 2018); None = plain PPO."""


class PPO:
    """Proximal policy optimisation for vector-observation environments."""

    weight_keys = ("learner.net",)
    """Paths in ``state_dict()`` of the learned weights (what ``--init-from`` copies from another run)."""

    batch_geometry = ("num_steps", "minibatch_size")

    def __init__(self, config: PPOConfig, obs_dim: int, spec: ActionSpec, total_updates: int, seed: int,
                 aux: dict[str, Auxiliary] | None = None):
        self.config, self.total_updates = config, total_updates
        self.learner = Learner(obs_dim, spec, config.net, config.learning_rate, seed,
                               adam_eps=config.adam_eps, max_grad_norm=config.max_grad_norm)
        self.policy = self.learner.net
        # auxiliary learners (RND, PDPPO's post-decision critic): they may rewrite the advantages and
        # train their own networks on the policy's minibatches; each is saved under its name.
        self.aux = dict(aux or {})
        if config.rnd is not None:
            self.aux["rnd"] = RNDBonus(config.rnd, obs_dim, seed + 7919)

    def update(self, batch: Rollout) -> dict[str, float]:
        cfg, learner = self.config, self.learner
        frac = linear_decay(learner.updates, self.total_updates)
        lr = cfg.learning_rate * (frac if cfg.anneal_lr else 1.0)
        clip = cfg.clip_coef * (frac if cfg.anneal_clip else 1.0)
        clip_high = None if cfg.clip_coef_high is None else cfg.clip_coef_high * (frac if cfg.anneal_clip else 1.0)
        learner.set_lr(lr)
        adv, ret = estimate(batch, cfg.gamma, cfg.gae_lambda)
        for aux in self.aux.values():
            adv = aux.prepare(batch, adv, ret)
        flat = flatten(batch, adv, ret)
        stats: list[torch.Tensor] = []
        use_entropy = cfg.ent_coef > 0
        for _ in range(cfg.update_epochs):
            for idx in learner.minibatches(len(flat), cfg.minibatch_size):
                mb = flat.take(idx)
                logp, entropy, values = self.policy.evaluate(mb.obs, mb.actions, mb.mask, entropy_grad=use_entropy)
                a = normalize(mb.advantages) if cfg.norm_adv and len(mb) > 1 else mb.advantages
                pg, clip_frac, kl = ppo_clip_loss(logp, mb.logp, a, clip, clip_high)
                vl = value_loss(values, mb.returns, mb.values, cfg.clip_coef_value if cfg.clip_vloss else None)
                ent = entropy.mean()
                loss = pg + cfg.vf_coef * vl - cfg.ent_coef * ent if use_entropy else pg + cfg.vf_coef * vl
                grad_norm = learner.step(loss)
                for aux in self.aux.values():
                    aux.step(idx)
                stats.append(torch.stack([pg.detach(), vl.detach(), ent.detach(), kl, clip_frac, grad_norm]))
            if cfg.target_kl is not None and float(kl) > cfg.target_kl:
                break
        learner.updates += 1
        m = torch.stack(stats).mean(0).tolist()
        out = {"loss/policy": m[0], "loss/value": m[1], "stats/entropy": m[2], "stats/approx_kl": m[3],
               "stats/clip_frac": m[4], "stats/grad_norm": m[5], "stats/explained_variance": explained_variance(flat),
               "opt/lr": lr, "opt/clip_coef": clip, "opt/grad_steps": float(len(stats))}
        for aux in self.aux.values():
            out |= aux.metrics()
        return out

    def state_dict(self) -> dict:
        return {"learner": self.learner.state_dict(), **{k: a.state_dict() for k, a in self.aux.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])
        for name, aux in self.aux.items():
            if name not in state:
                raise ValueError(f"checkpoint has no state for {name!r}: it was saved without that option")
            aux.load_state_dict(state[name])


def explained_variance(flat) -> float:
    """1 - Var[R - V] / Var[R] over the batch (1 = perfect value function)."""
    var_r = flat.returns.var()
    return float(1.0 - (flat.returns - flat.values).var() / var_r) if var_r > 0 else 0.0


