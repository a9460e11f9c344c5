"""REINFORCE with a learned baseline: Monte-Carlo returns-to-go minus V(s), one step per batch.

Williams, 1992, "Simple Statistical Gradient-Following Algorithms for Connectionist RL"; the
state-value baseline as in Sutton & Barto (2018), section 13.4. Returns are bootstrapped only where
the data stops without a termination (a truncation or the end of a rollout), so long rollouts
(``num_steps``) keep the estimate close to pure Monte Carlo.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from policyopt.algos.onpolicy import Learner, NetConfig, linear_decay, policy_gradient_update
from policyopt.core.config import configclass
from policyopt.data.rollout import Rollout
from policyopt.nets.actor_critic import ActionSpec


@configclass
class ReinforceConfig:
    learning_rate: Annotated[float, Field(gt=0)] = 1e-3
    """Adam learning rate."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over the run."""
    num_steps: Annotated[int, Field(gt=0)] = 500
    """Rollout length per env copy; use at least the typical episode length."""
    gamma: Annotated[float, Field(ge=0, le=1)] = 0.99
    """Discount factor."""
    norm_adv: bool = True
    """Normalise (return - baseline) over the batch."""
    ent_coef: Annotated[float, Field(ge=0)] = 0.0
    """Entropy bonus coefficient."""
    vf_coef: Annotated[float, Field(ge=0)] = 0.5
    """Baseline (value) loss coefficient."""
    max_grad_norm: Annotated[float, Field(gt=0)] | None = 0.5
    """Global gradient-norm clip; None disables it."""
    net: NetConfig = NetConfig()
    """Network architecture."""


class Reinforce:
    """REINFORCE (Williams, 1992) with a learned value baseline: Monte-Carlo returns, one gradient step
    per batch. ``Reinforce(ReinforceConfig(...), obs_dim, action_spec, total_updates, seed)``."""

    weight_keys = ("learner.net",)
    """Paths in ``state_dict()`` of the learned weights (what ``--init-from`` copies from another run)."""

    batch_geometry = ("num_steps",)

    def __init__(self, config: ReinforceConfig, obs_dim: int, spec: ActionSpec, total_updates: int, seed: int):
        self.config, self.total_updates = config, total_updates
        self.learner = Learner(obs_dim, spec, config.net, config.learning_rate, seed,
                               max_grad_norm=config.max_grad_norm)
        self.policy = self.learner.net

    def update(self, batch: Rollout) -> dict[str, float]:
        cfg = self.config
        frac = linear_decay(self.learner.updates, self.total_updates) if cfg.anneal_lr else 1.0
        return policy_gradient_update(self.learner, batch, gamma=cfg.gamma, lam=None, norm_adv=cfg.norm_adv,
                                      ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef, lr=cfg.learning_rate * frac)

    def state_dict(self) -> dict:
        return {"learner": self.learner.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])
