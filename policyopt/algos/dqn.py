"""DQN and its common extensions: target network (hard copy or Polyak), double DQN, dueling heads,
n-step returns, prioritized replay and action masks.

Mnih et al., 2015, "Human-level control through deep reinforcement learning" (Nature 518);
van Hasselt et al., 2016 (double DQN, arXiv:1509.06461); Wang et al., 2016 (dueling,
arXiv:1511.06581); Schaul et al., 2016 (prioritized replay, arXiv:1511.05952); Hessel et al., 2018
(Rainbow: n-step, arXiv:1710.02298). Hyper-parameter names follow Stable-Baselines3 / RL-Zoo.
"""

from __future__ import annotations

import copy
from typing import Annotated, Literal

import numpy as np
import torch
from gymnasium import spaces
from pydantic import Field
from torch import Tensor

from policyopt.core.config import configclass
from policyopt.data.replay import ReplayConfig, ReplaySpec, Transitions
from policyopt.losses.td import dqn_target, huber, masked_argmax
from policyopt.nets import distributions as D
from policyopt.nets.flat import FlatAdam, denormals_flushed
from policyopt.nets.qnets import QNetwork, polyak_update

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[float, Field(gt=0.0)]


@configclass
class DQNConfig:
    learning_rate: Positive = 1e-4
    """Adam learning rate."""
    batch_size: Annotated[int, Field(gt=0)] = 32
    """Transitions per gradient step."""
    learning_starts: Annotated[int, Field(ge=0)] = 100
    """Env steps of uniformly random actions before learning starts."""
    train_freq: Annotated[int, Field(gt=0)] = 4
    """Vector-env steps per collection (``train_freq * num_envs`` env steps)."""
    gradient_steps: Annotated[int, Field(ge=-1)] = 1
    """Gradient steps per collection; -1 = one per env step collected."""
    gamma: Fraction = 0.99
    """Discount factor."""
    tau: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    """Target-network update coefficient: 1 = hard copy, < 1 = Polyak averaging."""
    target_update_interval: Annotated[int, Field(gt=0)] = 10_000
    """Env steps between target-network updates."""
    exploration_fraction: Fraction = 0.1
    """Fraction of the run over which epsilon decays linearly."""
    exploration_initial_eps: Fraction = 1.0
    """Epsilon at the start of the decay."""
    exploration_final_eps: Fraction = 0.05
    """Epsilon after the decay."""
    max_grad_norm: Positive | None = 10.0
    """Global gradient-norm clip; None disables it."""
    double_q: bool = False
    """Double DQN target (argmax by the online network, value by the target network)."""
    dueling: bool = False
    """Dueling value/advantage heads."""
    loss: Literal["huber", "mse"] = "huber"
    """TD-error loss (huber = smooth L1 with delta 1, as SB3)."""
    adam_eps: Positive = 1e-8
    """Adam epsilon."""
    hidden_sizes: tuple[Annotated[int, Field(gt=0)], ...] = (64, 64)
    """Widths of the Q-network's hidden layers."""
    activation: Literal["tanh", "relu", "gelu", "silu"] = "relu"
    """Hidden-layer activation."""
    flush_denormal: bool = True
    """Flush denormal floats to zero during updates (``torch.set_flush_denormal``, scoped): Adam moments of
    dead ReLU units decay into denormals, whose arithmetic is 3-10x slower on x86 CPUs."""
    replay: ReplayConfig = ReplayConfig()
    """Replay buffer (size, n-step, prioritized sampling, checkpointing)."""


def linear_schedule(start: float, end: float, fraction: float, step: int, total_steps: int) -> float:
    """``start -> end`` linearly over the first ``fraction * total_steps`` steps, then ``end``."""
    span = fraction * total_steps
    if span <= 0:
        return end
    return start + min(1.0, step / span) * (end - start)


class GreedyPolicy:
    """The evaluator's view of a Q-network: greedy (masked) actions."""

    def __init__(self, q: QNetwork, offset: int):
        self.q, self.offset = q, offset

    def act(self, obs: Tensor, mask: Tensor | None, generator: torch.Generator | None,
            deterministic: bool = True) -> tuple[Tensor, None, None]:
        return masked_argmax(self.q.forward(obs), mask), None, None

    def to_env_actions(self, actions: Tensor) -> np.ndarray:
        a = actions.numpy()
        return a + self.offset if self.offset else a


class DQN:
    """Q-learning with a replay buffer and a target network, for Discrete action spaces."""

    weight_keys = ("q", "q_target")
    """Paths in ``state_dict()`` of the learned weights (what ``--init-from`` copies from another run)."""

    batch_geometry = ("batch_size", "train_freq", "gradient_steps")

    def __init__(self, config: DQNConfig, obs_dim: int, action_space: spaces.Space, total_steps: int, seed: int):
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"DQN needs a Discrete action space, got {action_space!r}")
        self.config, self.total_steps = config, total_steps
        self.n_actions = int(action_space.n)
        torch.manual_seed(seed)
        self.q = QNetwork(obs_dim, self.n_actions, config.hidden_sizes, config.activation, config.dueling)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)  # before FlatAdam re-homes q's parameters
        self.opt = FlatAdam(self.q, config.learning_rate, eps=config.adam_eps, max_grad_norm=config.max_grad_norm)
        self.params = list(self.q.parameters())
        self.target_params = list(self.q_target.parameters())
        self.policy = GreedyPolicy(self.q, int(action_space.start))
        self.updates = 0

    def replay_spec(self) -> ReplaySpec:
        r = self.config.replay
        return ReplaySpec(r.buffer_size, 0, 0, (), torch.int64, None, r.n_step, self.config.gamma,
                          r.prioritized, r.alpha)

    # -- behaviour -----------------------------------------------------------------------------
    def epsilon(self, step: int) -> float:
        c = self.config
        return linear_schedule(c.exploration_initial_eps, c.exploration_final_eps, c.exploration_fraction,
                               step, self.total_steps)

    def explore(self, obs: Tensor, mask: Tensor | None, step: int, generator: torch.Generator) -> Tensor:
        """Epsilon-greedy over allowed actions; uniformly random before ``learning_starts``."""
        n = obs.shape[0]
        uniform = D.categorical_sample(D.masked_logits(torch.zeros(n, self.n_actions), mask), generator, False)
        coin = torch.rand(n, generator=generator)
        eps = 1.0 if step < self.config.learning_starts else self.epsilon(step)
        if eps >= 1.0:
            return uniform
        greedy = masked_argmax(self.q.forward(obs), mask)
        return torch.where(coin < eps, uniform, greedy)

    def to_env_actions(self, actions: Tensor) -> np.ndarray:
        return self.policy.to_env_actions(actions)

    # -- learning ------------------------------------------------------------------------------
    def update(self, batch) -> dict[str, float]:
        with denormals_flushed(self.config.flush_denormal):
            return self._update(batch)

    def _update(self, batch) -> dict[str, float]:
        cfg = self.config
        prev = batch.step - batch.num_steps
        if batch.step // cfg.target_update_interval > prev // cfg.target_update_interval:
            polyak_update(self.target_params, self.params, cfg.tau)
        out = {"opt/epsilon": self.epsilon(batch.step)}
        if batch.gradient_steps == 0:
            return out
        steps = batch.gradient_steps
        if cfg.double_q or cfg.replay.prioritized:
            beta = cfg.replay.beta0 + (1.0 - cfg.replay.beta0) * min(1.0, batch.step / self.total_steps)
            stats = [self._step(batch, batch.sample(beta)) for _ in range(steps)]
        else:
            stats = self._burst(batch, steps)
        m = torch.stack(stats).mean(0).tolist()
        self.updates += steps
        out.update({"loss/td": m[0], "stats/q_mean": m[1], "stats/grad_norm": m[2], "opt/grad_steps": float(steps)})
        return out

    def _burst(self, batch, steps: int) -> list[Tensor]:
        """Fast path (plain targets, uniform replay): the target network does not change during an
        update, so the ``steps`` minibatches are drawn at once and their targets computed in one
        large forward pass of the target network (the same numbers, far fewer small matmuls)."""
        b = batch.batch_size
        big = batch.replay.sample(b * steps)
        with torch.no_grad():
            y = dqn_target(big.rewards, big.discounts, self.q_target.forward(big.next_obs), big.next_mask)
        out = []
        for i in range(steps):
            sl = slice(i * b, (i + 1) * b)
            out.append(self._descend(self.q.forward(big.obs[sl]), big.actions[sl], y[sl], None)[0])
        return out

    def _step(self, batch, mb: Transitions) -> Tensor:
        b = len(mb)
        if self.config.double_q:  # one forward of the online net for Q(s, .) and Q(s', .)
            q_both = self.q.forward(torch.cat([mb.obs, mb.next_obs]))
            q_all, q_next_online = q_both[:b], q_both[b:].detach()
        else:
            q_all, q_next_online = self.q.forward(mb.obs), None
        with torch.no_grad():
            y = dqn_target(mb.rewards, mb.discounts, self.q_target.forward(mb.next_obs), mb.next_mask, q_next_online)
        stats, td = self._descend(q_all, mb.actions, y, mb.weights)
        if mb.weights is not None:
            batch.update_priorities(mb.indices, td)
        return stats

    def _descend(self, q_all: Tensor, actions: Tensor, y: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor]:
        """One optimiser step on the (weighted) Huber / squared TD error; returns (stats, td)."""
        cfg = self.config
        q = q_all.gather(1, actions[:, None]).squeeze(1)
        td = q - y
        per = huber(td) if cfg.loss == "huber" else 0.5 * td * td
        loss = per.mean() if weights is None else (weights * per).mean()
        norm = self.opt.backward_step(loss)
        return torch.stack([loss.detach(), q.detach().mean(), norm]), td.detach()

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"q": dict(self.q.state_dict()), "q_target": dict(self.q_target.state_dict()),
                "optimizer": self.opt.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.opt.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])


