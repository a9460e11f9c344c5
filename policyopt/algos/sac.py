"""Soft Actor-Critic: twin critics with clipped double-Q targets, Polyak-averaged target critics,
automatic entropy (temperature) tuning, a tanh-squashed Gaussian policy for Box actions, and the
discrete variant for Discrete actions.

Haarnoja et al., 2018, "Soft Actor-Critic: Off-Policy Maximum Entropy Deep RL with a Stochastic
Actor" (arXiv:1801.01290) and "Soft Actor-Critic Algorithms and Applications" (arXiv:1812.05905);
Christodoulou, 2019, "Soft Actor-Critic for Discrete Action Settings" (arXiv:1910.07207).
The update order and defaults follow Stable-Baselines3 (temperature, then critics, then actor).
Both critics live in one :class:`~policyopt.nets.qnets.EnsembleMLP` (one batched matmul per layer).
"""

from __future__ import annotations

import copy
import math
from typing import Annotated, Literal

import numpy as np
import torch
from gymnasium import spaces
from pydantic import Field
from torch import Tensor, nn

from policyopt.core.config import configclass
from policyopt.core.seeding import generator_state, set_generator_state
from policyopt.data.replay import ReplayConfig, ReplaySpec, Transitions
from policyopt.losses.td import (
    discrete_sac_soft_value,
    sac_actor_loss,
    sac_soft_target,
    sac_temperature_loss,
    td_target,
)
from policyopt.nets import distributions as D
from policyopt.nets.flat import FlatAdam, denormals_flushed
from policyopt.nets.qnets import EnsembleMLP, QNetwork, SquashedGaussianActor, polyak_update

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[float, Field(gt=0.0)]


@configclass
class SACConfig:
    learning_rate: Positive = 3e-4
    """Adam learning rate of actor, critics and temperature."""
    batch_size: Annotated[int, Field(gt=0)] = 256
    """Transitions per gradient step."""
    learning_starts: Annotated[int, Field(ge=0)] = 100
    """Env steps of uniformly random actions before learning starts."""
    train_freq: Annotated[int, Field(gt=0)] = 1
    """Vector-env steps per collection (``train_freq * num_envs`` env steps)."""
    gradient_steps: Annotated[int, Field(ge=-1)] = 1
    """Gradient steps per collection; -1 = one per env step collected."""
    gamma: Fraction = 0.99
    """Discount factor."""
    tau: Annotated[float, Field(gt=0.0, le=1.0)] = 0.005
    """Polyak coefficient of the target critics."""
    target_update_interval: Annotated[int, Field(gt=0)] = 1
    """Gradient steps between target-critic updates."""
    ent_coef: Literal["auto"] | Positive = "auto"
    """Entropy coefficient alpha: a fixed value, or "auto" to tune it towards ``target_entropy``."""
    ent_coef_init: Positive = 1.0
    """Initial alpha when ``ent_coef == "auto"``."""
    target_entropy: float | None = None
    """Entropy target; None = -dim(A) (Box) or 0.98 * log|A| (Discrete)."""
    hidden_sizes: tuple[Annotated[int, Field(gt=0)], ...] = (256, 256)
    """Widths of the hidden layers of actor and critics."""
    activation: Literal["tanh", "relu", "gelu", "silu"] = "relu"
    """Hidden-layer activation."""
    max_grad_norm: Positive | None = None
    """Global gradient-norm clip of each network; None (the SAC default) disables it."""
    flush_denormal: bool = True
    """Flush denormal floats to zero during updates (``torch.set_flush_denormal``, scoped): Adam moments of
    dead ReLU units decay into denormals, whose arithmetic is 3-10x slower on x86 CPUs."""
    replay: ReplayConfig = ReplayConfig()
    """Replay buffer (size, n-step, prioritized sampling, checkpointing)."""


class SACPolicy:
    """The evaluator's view of the actor: the mean action (deterministic) or a sample."""

    def __init__(self, sac: SAC):
        self.sac = sac

    def act(self, obs: Tensor, mask: Tensor | None, generator: torch.Generator | None,
            deterministic: bool = True) -> tuple[Tensor, None, None]:
        s = self.sac
        if s.discrete:
            logits = D.masked_logits(s.actor.forward(obs), mask)
            return D.categorical_sample(logits, generator, deterministic), None, None
        if deterministic:
            return s.actor.mode(obs), None, None
        return s.actor.sample(obs, generator)[0], None, None

    def to_env_actions(self, actions: Tensor) -> np.ndarray:
        return self.sac.to_env_actions(actions)


class SAC:
    """SAC for Box (squashed Gaussian) and Discrete (categorical, exact expectations) actions."""

    weight_keys = ("actor", "critic", "critic_target")
    """Paths in ``state_dict()`` of the learned weights (what ``--init-from`` copies from another run)."""

    batch_geometry = ("batch_size", "train_freq", "gradient_steps")

    def __init__(self, config: SACConfig, obs_dim: int, action_space: spaces.Space, total_steps: int, seed: int):
        self.config, self.total_steps = config, total_steps
        torch.manual_seed(seed)
        h, act = config.hidden_sizes, config.activation
        if isinstance(action_space, spaces.Box):
            if not np.all(np.isfinite(action_space.low)) or not np.all(np.isfinite(action_space.high)):
                raise ValueError(f"SAC needs a bounded Box action space, got {action_space!r}")
            self.discrete, self.act_dim = False, int(np.prod(action_space.shape))
            self.low = action_space.low.astype(np.float32).reshape(-1)
            self.high = action_space.high.astype(np.float32).reshape(-1)
            self.act_shape = action_space.shape
            self.actor = SquashedGaussianActor(obs_dim, self.act_dim, h, act)
            self.critic = EnsembleMLP(2, obs_dim + self.act_dim, h, 1, act)
            default_target = -float(self.act_dim)
        elif isinstance(action_space, spaces.Discrete):
            self.discrete, self.act_dim, self.offset = True, int(action_space.n), int(action_space.start)
            self.actor = QNetwork(obs_dim, self.act_dim, h, act)  # outputs the policy's logits
            self.critic = EnsembleMLP(2, obs_dim, h, self.act_dim, act)
            default_target = 0.98 * math.log(self.act_dim)
        else:
            raise ValueError(f"SAC needs a Box or Discrete action space, got {action_space!r}")
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)  # before FlatAdam re-homes params
        self.target_entropy = default_target if config.target_entropy is None else config.target_entropy
        self.auto_alpha = config.ent_coef == "auto"
        init = config.ent_coef_init if self.auto_alpha else float(config.ent_coef)
        self.alpha_holder = nn.Module()
        self.alpha_holder.log_alpha = nn.Parameter(torch.full((1,), math.log(init)), requires_grad=self.auto_alpha)
        lr, clip = config.learning_rate, config.max_grad_norm
        self.actor_opt = FlatAdam(self.actor, lr, max_grad_norm=clip)
        self.critic_opt = FlatAdam(self.critic, lr, max_grad_norm=clip)
        self.alpha_opt = FlatAdam(self.alpha_holder, lr) if self.auto_alpha else None
        self.log_alpha = self.alpha_holder.log_alpha
        self.critic_params = list(self.critic.parameters())
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.policy = SACPolicy(self)
        self.updates = 0

    def replay_spec(self) -> ReplaySpec:
        r = self.config.replay
        if self.discrete:
            return ReplaySpec(r.buffer_size, 0, 0, (), torch.int64, None, r.n_step, self.config.gamma,
                              r.prioritized, r.alpha)
        return ReplaySpec(r.buffer_size, 0, 0, (self.act_dim,), torch.float32, None, r.n_step, self.config.gamma,
                          r.prioritized, r.alpha)

    # -- behaviour -----------------------------------------------------------------------------
    def explore(self, obs: Tensor, mask: Tensor | None, step: int, generator: torch.Generator) -> Tensor:
        """A policy sample; uniformly random actions before ``learning_starts`` (as SB3)."""
        n = obs.shape[0]
        if step < self.config.learning_starts:
            if self.discrete:
                return D.categorical_sample(D.masked_logits(torch.zeros(n, self.act_dim), mask), generator, False)
            return torch.rand(n, self.act_dim, generator=generator) * 2.0 - 1.0
        return self.policy.act(obs, mask, generator, deterministic=False)[0]

    def to_env_actions(self, actions: Tensor) -> np.ndarray:
        a = actions.numpy()
        if self.discrete:
            return a + self.offset if self.offset else a
        scaled = self.low + (a + 1.0) * 0.5 * (self.high - self.low)
        return np.clip(scaled, self.low, self.high).reshape((-1, *self.act_shape))

    # -- learning ------------------------------------------------------------------------------
    def update(self, batch) -> dict[str, float]:
        with denormals_flushed(self.config.flush_denormal):
            return self._update(batch)

    def _update(self, batch) -> dict[str, float]:
        if batch.gradient_steps == 0:
            return {}
        beta0 = self.config.replay.beta0
        beta = beta0 + (1.0 - beta0) * min(1.0, batch.step / self.total_steps)
        step = self._discrete_step if self.discrete else self._continuous_step
        stats = [step(batch, batch.sample(beta)) for _ in range(batch.gradient_steps)]
        m = torch.stack(stats).mean(0).tolist()
        return {"loss/critic": m[0], "loss/actor": m[1], "loss/alpha": m[2], "stats/alpha": m[3],
                "stats/entropy": m[4], "stats/q_mean": m[5], "opt/grad_steps": float(batch.gradient_steps)}

    def _alpha_step(self, logp: Tensor) -> tuple[Tensor, Tensor]:
        """Temperature update on ``log pi`` of fresh policy samples; returns (alpha used, loss)."""
        alpha = self.log_alpha.detach().exp()
        if not self.auto_alpha:
            return alpha, torch.zeros(())
        loss = sac_temperature_loss(self.log_alpha, logp, self.target_entropy)
        self.alpha_opt.backward_step(loss)
        return alpha, loss.detach()

    def _continuous_step(self, batch, mb: Transitions) -> Tensor:
        a_pi, logp_pi = self.actor.sample(mb.obs, self.generator)
        alpha, alpha_loss = self._alpha_step(logp_pi)
        with torch.no_grad():
            a_next, logp_next = self.actor.sample(mb.next_obs, self.generator)
            q_next = self.critic_target.forward(torch.cat([mb.next_obs, a_next], 1)).squeeze(-1)   # [2, B]
            y = sac_soft_target(mb.rewards, mb.discounts, q_next[0], q_next[1], logp_next, alpha)
        q = self.critic.forward(torch.cat([mb.obs, mb.actions], 1)).squeeze(-1)                 # [2, B]
        critic_loss = self._critic_step(batch, mb, q, y)
        self.critic.requires_grad_(False)  # the actor loss needs d/da Q only, not d/dtheta_Q
        q_pi = self.critic.forward(torch.cat([mb.obs, a_pi], 1)).squeeze(-1).min(0).values
        self.critic.requires_grad_(True)
        actor_loss = sac_actor_loss(logp_pi, q_pi, alpha)
        self.actor_opt.backward_step(actor_loss)
        self._after_step()
        return torch.stack([critic_loss, actor_loss.detach(), alpha_loss, alpha[0], -logp_pi.detach().mean(),
                            q.detach().mean()])

    def _discrete_step(self, batch, mb: Transitions) -> Tensor:
        logp_all = torch.log_softmax(self.actor.forward(mb.obs), -1)
        probs = logp_all.exp()
        neg_entropy = (probs * logp_all).sum(-1)
        alpha, alpha_loss = self._alpha_step(neg_entropy)
        with torch.no_grad():
            next_logp = torch.log_softmax(D.masked_logits(self.actor.forward(mb.next_obs), mb.next_mask), -1)
            q_next = self.critic_target.forward(mb.next_obs).min(0).values                    # [B, A]
            v_next = discrete_sac_soft_value(q_next, next_logp.exp(), next_logp.clamp(min=-1e8), alpha)
            y = td_target(mb.rewards, mb.discounts, v_next)
        q_all = self.critic.forward(mb.obs)                                                    # [2, B, A]
        q = q_all.gather(2, mb.actions.view(1, -1, 1).expand(2, -1, 1)).squeeze(-1)           # [2, B]
        critic_loss = self._critic_step(batch, mb, q, y)
        q_min = q_all.detach().min(0).values
        actor_loss = (probs * (alpha * logp_all - q_min)).sum(-1).mean()
        self.actor_opt.backward_step(actor_loss)
        self._after_step()
        return torch.stack([critic_loss, actor_loss.detach(), alpha_loss, alpha[0], -neg_entropy.detach().mean(),
                            q.detach().mean()])

    def _critic_step(self, batch, mb: Transitions, q: Tensor, y: Tensor) -> Tensor:
        """``0.5 * sum_i mean_B (Q_i - y)^2`` (importance-weighted with prioritized replay)."""
        err = q - y
        if mb.weights is None:
            loss = 0.5 * (err * err).mean(1).sum()
        else:
            loss = 0.5 * (mb.weights * err * err).mean(1).sum()
            batch.update_priorities(mb.indices, err.detach().abs().mean(0))
        self.critic_opt.backward_step(loss)
        return loss.detach()

    def _after_step(self) -> None:
        self.updates += 1
        if self.updates % self.config.target_update_interval == 0:
            polyak_update(list(self.critic_target.parameters()), self.critic_params, self.config.tau)

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"actor": dict(self.actor.state_dict()), "critic": dict(self.critic.state_dict()),
                 "critic_target": dict(self.critic_target.state_dict()), "log_alpha": self.log_alpha.detach().clone(),
                 "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                 "generator": generator_state(self.generator), "updates": self.updates}
        if self.alpha_opt is not None:
            state["alpha_opt"] = self.alpha_opt.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        if self.alpha_opt is not None:
            self.alpha_opt.load_state_dict(state["alpha_opt"])
        set_generator_state(self.generator, state["generator"])
        self.updates = int(state["updates"])


