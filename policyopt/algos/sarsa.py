"""SARSA and expected SARSA: tabular (Discrete observations) or with a Q-network.

On-policy TD control with an epsilon-greedy behaviour policy (Rummery & Niranjan, 1994, "On-line
Q-learning using connectionist systems"; Sutton & Barto, 2018, sec. 6.4 and 6.6; van Seijen et al.,
2009 for expected SARSA). The targets are the pure functions of :mod:`policyopt.losses.td`::

    SARSA:           y = r + gamma (1 - terminated) Q(s', a')                 a' = the action taken next
    expected SARSA:  y = r + gamma (1 - terminated) sum_a pi_eps(a|s') Q(s', a)

Tabular: ``Q[s, a] += lr * (y - Q[s, a])`` for every transition of the batch (one batch = the
``train_freq * num_envs`` latest transitions; updates of one batch are summed, each computed from
the table before the batch). Function approximation: one optimiser step on ``0.5 * mean (y - Q)^2``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import torch
from gymnasium import spaces
from pydantic import Field
from torch import Tensor, nn

from policyopt.algos.dqn import GreedyPolicy, linear_schedule
from policyopt.algos.onpolicy import load_optimizer_tree, optimizer_tree
from policyopt.core.config import configclass
from policyopt.losses.td import epsilon_greedy_probs, expected_sarsa_target, masked_argmax, sarsa_target
from policyopt.nets import distributions as D
from policyopt.nets.optim import optimizer_step
from policyopt.nets.qnets import QNetwork

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[float, Field(gt=0.0)]


@configclass
class SARSAConfig:
    expected: bool = False
    """Expected SARSA (average over the epsilon-greedy policy at s') instead of SARSA."""
    tabular: bool = False
    """A table Q[s, a] (Discrete observation spaces only) instead of a Q-network."""
    learning_rate: Positive = 0.1
    """Step size of the tabular update, or the optimiser's learning rate."""
    optimizer: Literal["sgd", "adam"] = "adam"
    """Optimiser of the Q-network (function approximation only)."""
    gamma: Fraction = 0.99
    """Discount factor."""
    train_freq: Annotated[int, Field(gt=0)] = 1
    """Vector-env steps per update."""
    exploration_fraction: Fraction = 0.1
    """Fraction of the run over which epsilon decays linearly."""
    exploration_initial_eps: Fraction = 1.0
    """Epsilon at the start of the decay."""
    exploration_final_eps: Fraction = 0.05
    """Epsilon after the decay (the policy SARSA evaluates)."""
    hidden_sizes: tuple[Annotated[int, Field(gt=0)], ...] = (64,)
    """Hidden layers of the Q-network; () = linear in the observation features."""
    activation: Literal["tanh", "relu", "gelu", "silu"] = "relu"
    """Hidden-layer activation."""
    max_grad_norm: Positive | None = 10.0
    """Global gradient-norm clip of the Q-network; None disables it."""


class TabularQ(nn.Module):
    """``Q[s, a]`` as a table; ``forward(one_hot_obs [B, S]) -> [B, A]`` (a linear map of the one-hot)."""

    def __init__(self, n_states: int, n_actions: int):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(n_states, n_actions), requires_grad=False)

    def forward(self, obs: Tensor) -> Tensor:
        return self.table[obs.argmax(-1)]


class SARSA:
    """SARSA / expected SARSA with epsilon-greedy exploration, for Discrete action spaces."""

    weight_keys = ("q",)
    """Paths in ``state_dict()`` of the learned weights (what ``--init-from`` copies from another run)."""

    batch_geometry = ("train_freq",)

    def __init__(self, config: SARSAConfig, obs_dim: int, action_space: spaces.Space, total_steps: int, seed: int,
                 tabular_states: int | None = None):
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"SARSA needs a Discrete action space, got {action_space!r}")
        if config.tabular and tabular_states is None:
            raise ValueError("sarsa.tabular needs a Discrete observation space (one table row per state)")
        self.config, self.total_steps, self.n_actions = config, total_steps, int(action_space.n)
        torch.manual_seed(seed)
        if config.tabular:
            self.q: nn.Module = TabularQ(tabular_states, self.n_actions)
            self.opt = None
        else:
            self.q = QNetwork(obs_dim, self.n_actions, config.hidden_sizes, config.activation)
            params = list(self.q.parameters())
            self.opt = (torch.optim.Adam(params, lr=config.learning_rate, fused=True) if config.optimizer == "adam"
                        else torch.optim.SGD(params, lr=config.learning_rate))
        self.policy = GreedyPolicy(self.q, int(action_space.start))
        self.updates = 0

    def epsilon(self, step: int) -> float:
        c = self.config
        return linear_schedule(c.exploration_initial_eps, c.exploration_final_eps, c.exploration_fraction,
                               step, self.total_steps)

    def explore(self, obs: Tensor, mask: Tensor | None, step: int, generator: torch.Generator) -> Tensor:
        n = obs.shape[0]
        uniform = D.categorical_sample(D.masked_logits(torch.zeros(n, self.n_actions), mask), generator, False)
        coin = torch.rand(n, generator=generator)
        greedy = masked_argmax(self.q.forward(obs), mask)
        return torch.where(coin < self.epsilon(step), uniform, greedy)

    def to_env_actions(self, actions: Tensor) -> np.ndarray:
        return self.policy.to_env_actions(actions)

    def target(self, batch) -> Tensor:
        discounts = self.config.gamma * (~batch.terminated).float()
        with torch.no_grad():
            q_next = self.q.forward(batch.next_obs)
            if self.config.expected:
                probs = epsilon_greedy_probs(q_next, self.epsilon(batch.step), batch.next_mask)
                return expected_sarsa_target(batch.rewards, discounts, q_next, probs)
            return sarsa_target(batch.rewards, discounts, q_next, batch.next_actions)

    def update(self, batch) -> dict[str, float]:
        if batch.obs.shape[0] == 0:
            return {}
        y = self.target(batch)
        a = batch.actions.long()
        if self.opt is None:
            s = batch.obs.argmax(-1)
            td = y - self.q.table[s, a]
            self.q.table.data.index_put_((s, a), self.config.learning_rate * td, accumulate=True)
        else:
            td = y - self.q.forward(batch.obs).gather(1, a[:, None]).squeeze(1)
            loss = 0.5 * (td * td).mean()
            optimizer_step(self.opt, self.q.parameters(), loss, self.config.max_grad_norm)
        self.updates += 1
        return {"loss/td": float(0.5 * (td.detach() ** 2).mean()), "opt/epsilon": self.epsilon(batch.step)}

    def state_dict(self) -> dict:
        state = {"q": dict(self.q.state_dict()), "updates": self.updates}
        if self.opt is not None:
            state["optimizer"] = optimizer_tree(self.opt)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.q.load_state_dict(state["q"])
        if self.opt is not None:
            load_optimizer_tree(self.opt, state["optimizer"])
        self.updates = int(state["updates"])


