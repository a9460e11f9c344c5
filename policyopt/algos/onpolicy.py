"""Shared pieces of the on-policy actor-critic family (PPO, A2C, REINFORCE): network options,
the flattened batch, the optimiser step with gradient clipping and the annealing schedule.

Each algorithm's own file holds its config and its update; nothing here is a base class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from policyopt.core.config import configclass
from policyopt.data.rollout import Rollout
from policyopt.losses import discounted_returns, gae
from policyopt.nets.actor_critic import ActionSpec, ActorCritic
from policyopt.nets.flat import FlatAdam
from policyopt.nets.optim import optimizer_step


@configclass
class NetConfig:
    hidden_sizes: tuple[Annotated[int, Field(gt=0)], ...] = (64, 64)
    """Widths of the hidden layers of the actor and critic MLPs."""
    activation: Literal["tanh", "relu", "gelu", "silu"] = "tanh"
    """Hidden-layer activation."""
    shared_torso: bool = False
    """Share one MLP torso between actor and critic (default: two separate networks)."""
    init_log_std: float = 0.0
    """Initial log standard deviation of Gaussian policies (Box actions)."""


class Auxiliary(Protocol):
    """A learner that rides on PPO's update (RND's predictor, PDPPO's post-decision critic).

    ``prepare(batch, advantages [T, N], returns [T, N]) -> advantages [T, N]`` runs once per update
    before the batch is flattened; ``step(idx)`` once per policy minibatch with the same indices into
    the valid, flattened steps (``None`` = all); ``metrics()`` after the epochs. It owns its optimizer.
    """

    def prepare(self, batch: Rollout, advantages: Tensor, returns: Tensor) -> Tensor: ...

    def step(self, idx: Tensor | None) -> None: ...

    def metrics(self) -> dict[str, float]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class FlatBatch:
    """The valid transitions of a rollout, flattened to ``[B, ...]``."""

    obs: Tensor
    actions: Tensor
    logp: Tensor
    values: Tensor
    advantages: Tensor
    returns: Tensor
    mask: Tensor | None

    def __len__(self) -> int:
        return self.obs.shape[0]

    def take(self, idx: Tensor | None) -> FlatBatch:
        if idx is None:
            return self
        return FlatBatch(self.obs[idx], self.actions[idx], self.logp[idx], self.values[idx],
                         self.advantages[idx], self.returns[idx], None if self.mask is None else self.mask[idx])


def flatten(batch: Rollout, advantages: Tensor, returns: Tensor) -> FlatBatch:
    """Keep only ``batch.valid`` steps and flatten time and env axes."""
    v = batch.valid
    all_valid = bool(v.all())

    def pick(x: Tensor) -> Tensor:
        return x.reshape(-1, *x.shape[2:]) if all_valid else x[v]

    mask = None if batch.action_mask is None else pick(batch.action_mask)
    return FlatBatch(pick(batch.obs), pick(batch.actions), pick(batch.logp), pick(batch.values),
                     pick(advantages), pick(returns), mask)


def estimate(batch: Rollout, gamma: float, lam: float | None) -> tuple[Tensor, Tensor]:
    """GAE(lambda) advantages and returns, or Monte-Carlo returns minus the baseline when
    ``lam is None``."""
    if lam is None:
        returns = discounted_returns(batch.rewards, batch.next_values, batch.terminated, batch.episode_end, gamma)
        return returns - batch.values, returns
    return gae(batch.rewards, batch.values, batch.next_values, batch.terminated, batch.episode_end, gamma, lam)


class Learner:
    """Owns the actor-critic, its optimiser, the numpy RNG for minibatch order and the update count."""

    def __init__(self, obs_dim: int, spec: ActionSpec, net: NetConfig, lr: float, seed: int,
                 optimizer: str = "adam", adam_eps: float = 1e-5, max_grad_norm: float | None = 0.5):
        torch.manual_seed(seed)
        self.net = ActorCritic(obs_dim, spec, net.hidden_sizes, net.activation, net.shared_torso, net.init_log_std)
        if optimizer == "adam":
            # parameters and gradients in one flat buffer: one norm, one fused Adam kernel per step
            self.opt = FlatAdam(self.net, lr, eps=adam_eps, max_grad_norm=max_grad_norm)
        else:
            self.opt = torch.optim.RMSprop(self.net.parameters(), lr=lr, alpha=0.99, eps=adam_eps, foreach=True)
        self.params, self.base_lr, self.max_grad_norm = list(self.net.parameters()), lr, max_grad_norm
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.updates = 0

    def set_lr(self, lr: float) -> None:
        if isinstance(self.opt, FlatAdam):
            self.opt.lr = lr
            return
        for group in self.opt.param_groups:
            group["lr"] = lr

    def step(self, loss: Tensor) -> Tensor:
        """Backward, clip the global gradient norm, optimiser step; returns the pre-clip norm (0-d)."""
        return optimizer_step(self.opt, self.params, loss, self.max_grad_norm)

    def minibatches(self, n: int, size: int) -> list[Tensor | None]:
        """Shuffled index minibatches; ``[None]`` (= the whole batch, no copy) when one minibatch
        holds everything, since a full-batch gradient does not depend on the order."""
        if size >= n:
            return [None]
        return list(torch.from_numpy(self.rng.permutation(n)).split(size))

    def state_dict(self) -> dict:
        flat = isinstance(self.opt, FlatAdam)
        return {"net": {k: v.clone() for k, v in self.net.state_dict().items()},
                "optimizer": self.opt.state_dict() if flat else optimizer_tree(self.opt),
                "rng": self.rng.bit_generator.state, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        if isinstance(self.opt, FlatAdam):
            self.opt.load_state_dict(state["optimizer"])
        else:
            load_optimizer_tree(self.opt, state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.updates = int(state["updates"])


def linear_decay(updates: int, total_updates: int) -> float:
    """The fraction of the schedule left: 1 at the first update, -> 0 at the last."""
    return max(0.0, 1.0 - updates / max(total_updates, 1))


def optimizer_tree(opt: torch.optim.Optimizer) -> dict:
    """``optimizer.state_dict()`` as a state tree (JSON needs string keys)."""
    sd = opt.state_dict()
    return {"state": {str(k): v for k, v in sd["state"].items()}, "param_groups": sd["param_groups"]}


def load_optimizer_tree(opt: torch.optim.Optimizer, tree: dict) -> None:
    groups = [dict(g, params=[int(p) for p in g["params"]]) for g in tree["param_groups"]]
    for g, current in zip(groups, opt.param_groups):
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        if len(g["params"]) != len(current["params"]):
            raise ValueError("checkpoint optimizer does not match the model's parameters")
    opt.load_state_dict({"state": {int(k): v for k, v in tree["state"].items()}, "param_groups": groups})


def policy_gradient_update(learner: Learner, batch: Rollout, *, gamma: float, lam: float | None,
                           norm_adv: bool, ent_coef: float, vf_coef: float, lr: float) -> dict[str, float]:
    """One full-batch step of ``-A log pi - c_e H + c_v L_V`` (A2C and REINFORCE with baseline)."""
    from policyopt.losses import normalize, policy_gradient_loss, value_loss

    learner.set_lr(lr)
    adv, ret = estimate(batch, gamma, lam)
    flat = flatten(batch, adv, ret)
    logp, entropy, values = learner.net.evaluate(flat.obs, flat.actions, flat.mask)
    a = normalize(flat.advantages) if norm_adv else flat.advantages
    pg = policy_gradient_loss(logp, a)
    vl = value_loss(values, flat.returns)
    ent = entropy.mean()
    grad_norm = float(learner.step(pg - ent_coef * ent + vf_coef * vl))
    learner.updates += 1
    return {"loss/policy": float(pg.detach()), "loss/value": float(vl.detach()), "stats/entropy": float(ent.detach()),
            "stats/grad_norm": grad_norm, "opt/lr": lr}
