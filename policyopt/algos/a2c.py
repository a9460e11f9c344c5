"""A2C: synchronous advantage actor-critic with n-step (GAE) returns, one gradient step per batch.

Mnih et al., 2016, "Asynchronous Methods for Deep Reinforcement Learning" (the synchronous
variant popularised by OpenAI Baselines). Defaults follow Stable-Baselines3's A2C (RMSprop).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from policyopt.algos.onpolicy import Learner, NetConfig, linear_decay, policy_gradient_update
from policyopt.core.config import configclass
from policyopt.data.rollout import Rollout
from policyopt.nets.actor_critic import ActionSpec


@configclass
class A2CConfig:
    learning_rate: Annotated[float, Field(gt=0)] = 7e-4
    """Optimizer learning rate."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over the run."""
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    """RMSprop (alpha 0.99) as in the paper, or Adam."""
    num_steps: Annotated[int, Field(gt=0)] = 5
    """Rollout length per env copy (the n of the n-step return)."""
    gamma: Annotated[float, Field(ge=0, le=1)] = 0.99
    """Discount factor."""
    gae_lambda: Annotated[float, Field(ge=0, le=1)] = 1.0
    """GAE lambda; 1.0 gives plain n-step returns."""
    norm_adv: bool = False
    """Normalise advantages over the batch."""
    ent_coef: Annotated[float, Field(ge=0)] = 0.0
    """Entropy bonus coefficient."""
    vf_coef: Annotated[float, Field(ge=0)] = 0.5
    """Value-loss coefficient."""
    max_grad_norm: Annotated[float, Field(gt=0)] | None = 0.5
    """Global gradient-norm clip; None disables it."""
    eps: Annotated[float, Field(gt=0)] = 1e-5
    """Optimizer epsilon."""
    net: NetConfig = NetConfig()
    """Network architecture."""


class A2C:
    """A2C (Mnih et al., 2016): one policy-gradient + value step per ``num_steps`` x ``num_envs`` batch,
    advantages from GAE, RMSprop by default. ``A2C(A2CConfig(...), obs_dim, action_spec, total_updates,
    seed)``; ``update(rollout) -> metrics``; ``policy`` acts."""

    weight_keys = ("learner.net",)
    """Paths in ``state_dict()`` of the learned weights (what ``--init-from`` copies from another run)."""

    batch_geometry = ("num_steps",)

    def __init__(self, config: A2CConfig, obs_dim: int, spec: ActionSpec, total_updates: int, seed: int):
        self.config, self.total_updates = config, total_updates
        self.learner = Learner(obs_dim, spec, config.net, config.learning_rate, seed, config.optimizer,
                               config.eps, config.max_grad_norm)
        self.policy = self.learner.net

    def update(self, batch: Rollout) -> dict[str, float]:
        cfg = self.config
        frac = linear_decay(self.learner.updates, self.total_updates) if cfg.anneal_lr else 1.0
        return policy_gradient_update(self.learner, batch, gamma=cfg.gamma, lam=cfg.gae_lambda,
                                      norm_adv=cfg.norm_adv, ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef,
                                      lr=cfg.learning_rate * frac)

    def state_dict(self) -> dict:
        return {"learner": self.learner.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])
