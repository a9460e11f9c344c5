"""PDPPO: post-decision PPO with dual critic networks.

Felizardo, Fadda, Brandimarte, Del-Moral-Hernandez & Nascimento, 2024/2025, "A Reinforcement Learning
Method for Environments with Stochastic Variables: Post-Decision Proximal Policy Optimization with Dual
Critic Networks" (arXiv:2504.05150). A transition ``s_t -> s_{t+1}`` splits into a deterministic step to
the *post-decision state* ``s^x_t`` (here: production has arrived, demand not yet drawn; Powell,
"Approximate Dynamic Programming", 2011, ch. 4) and a random step (the demand). Besides PPO's critic
``V(s_t)`` a second critic ``V^x(s^x_t)`` with its own optimizer learns the same target, the
lambda-return ``R_t`` (``V^x(s^x_t) = E[R_t | s^x_t]``). The paper's combined estimate is the *maximum
advantage*

.. math:: A_t = \\max\\big(R_t - V(s_t),\\ R_t - V^x(s^x_t)\\big) = R_t - \\min\\big(V(s_t), V^x(s^x_t)\\big),

i.e. the return measured against the more pessimistic of the two critics (``advantage: max``; ``mean``
averages the two advantages instead). Everything else is PPO (:mod:`policyopt.algos.ppo`).

The environment must put the post-decision observation in ``info[post_decision_key]`` at every step
(``policyopt/LotSizing-v0`` does: ``info["post_decision_obs"]``); the collector stores it in
``Rollout.extra_obs``.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from policyopt.algos.onpolicy import load_optimizer_tree, optimizer_tree
from policyopt.algos.ppo import PPO, PPOConfig
from policyopt.core.config import configclass
from policyopt.data.rollout import Rollout
from policyopt.losses import value_loss
from policyopt.nets.actor_critic import MLP, ActionSpec
from policyopt.nets.optim import optimizer_step


@configclass
class PDPPOConfig(PPOConfig):
    """Every PPO option (see :class:`~policyopt.algos.ppo.PPOConfig`) plus the post-decision critic."""

    post_decision_key: str = "post_decision_obs"
    """The ``info`` key holding the post-decision observation ``[num_envs, D]`` of each step."""
    advantage: Literal["max", "mean"] = "max"
    """How the two critics' advantages combine: ``max`` (the paper) or ``mean``."""
    post_critic_lr: Annotated[float, Field(gt=0.0)] | None = None
    """Adam learning rate of the post-decision critic (its own optimizer); None = ``learning_rate``
    (annealed with it when ``anneal_lr``)."""
    post_critic_hidden_sizes: tuple[Annotated[int, Field(gt=0)], ...] = (64, 64)
    """Hidden widths of the post-decision critic (activation: ``net.activation``)."""


class PostDecisionCritic:
    """``V^x(s^x)``: an MLP critic on post-decision observations, trained on PPO's minibatches.

    As a PPO auxiliary learner it rewrites the advantages to the paper's combination and fits
    ``V^x`` to the lambda-returns with (optionally clipped) half squared error.
    """

    def __init__(self, config: PDPPOConfig, post_dim: int, total_updates: int, seed: int):
        self.config, self.total_updates = config, total_updates
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.torso = MLP(post_dim, config.post_critic_hidden_sizes, config.net.activation)
            self.head = nn.Linear(self.torso.out_dim, 1)
            for m in (*self.torso.layers, self.head):
                nn.init.orthogonal_(m.weight, 1.0 if m is self.head else math.sqrt(2))
                nn.init.zeros_(m.bias)
        self.params = [*self.torso.parameters(), *self.head.parameters()]
        self.base_lr = config.post_critic_lr or config.learning_rate
        self.opt = torch.optim.Adam(self.params, lr=self.base_lr, eps=config.adam_eps, fused=True)
        self.updates = 0
        self.flat: tuple[Tensor, Tensor, Tensor] = ()
        self.stats: dict[str, float] = {}
        self.losses: list[Tensor] = []

    def value(self, post_obs: Tensor) -> Tensor:
        """``[..., D] -> [...]``."""
        return F.linear(self.torso.forward(post_obs), self.head.weight, self.head.bias).squeeze(-1)

    def prepare(self, batch: Rollout, adv: Tensor, ret: Tensor) -> Tensor:
        """The combined advantages ``[T, N]`` from PPO's ``adv = R - V(s)`` and ``R - V^x(s^x)``."""
        if batch.extra_obs is None:
            raise ValueError("PDPPO needs the post-decision observations in Rollout.extra_obs: build the "
                             f"collector with extra_obs_key={self.config.post_decision_key!r}")
        cfg = self.config
        lr = self.base_lr
        if cfg.anneal_lr and cfg.post_critic_lr is None:
            lr *= max(0.0, 1.0 - self.updates / max(self.total_updates, 1))
        for group in self.opt.param_groups:
            group["lr"] = lr
        with torch.no_grad():
            v_post = self.value(batch.extra_obs)
        adv_post = ret - v_post
        combined = torch.maximum(adv, adv_post) if cfg.advantage == "max" else 0.5 * (adv + adv_post)
        v = batch.valid
        self.flat = (batch.extra_obs[v], ret[v], v_post[v])
        r, vx, vs = ret[v], v_post[v], batch.values[v]
        var_r = float(r.var()) if r.numel() > 1 else 0.0
        self.stats = {
            "pdppo/post_chosen_frac": float((adv_post[v] > adv[v]).float().mean()),
            "pdppo/explained_variance_post": 1.0 - float((r - vx).var()) / var_r if var_r > 0 else 0.0,
            "pdppo/critic_gap": float((vx - vs).mean()),
        }
        self.losses = []
        self.updates += 1
        return combined

    def step(self, idx: Tensor | None) -> None:
        obs, ret, old = self.flat if idx is None else (t[idx] for t in self.flat)
        cfg = self.config
        loss = value_loss(self.value(obs), ret, old, cfg.clip_coef_value if cfg.clip_vloss else None)
        optimizer_step(self.opt, self.params, loss, cfg.max_grad_norm)
        self.losses.append(loss.detach())

    def metrics(self) -> dict[str, float]:
        loss = float(torch.stack(self.losses).mean()) if self.losses else float("nan")
        return {**self.stats, "pdppo/post_value_loss": loss}

    def state_dict(self) -> dict:
        return {"torso": dict(self.torso.state_dict()), "head": dict(self.head.state_dict()),
                "optimizer": optimizer_tree(self.opt), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.torso.load_state_dict(state["torso"])
        self.head.load_state_dict(state["head"])
        load_optimizer_tree(self.opt, state["optimizer"])
        self.updates = int(state["updates"])


def PDPPO(config: PDPPOConfig, obs_dim: int, spec: ActionSpec, total_updates: int, seed: int,  # noqa: N802
          post_dim: int | None = None) -> PPO:
    """A :class:`~policyopt.algos.ppo.PPO` whose advantages come from the dual critics.
    ``post_dim`` is the size of the post-decision observation (default: ``obs_dim``)."""
    critic = PostDecisionCritic(config, post_dim or obs_dim, total_updates, seed + 104729)
    return PPO(config, obs_dim, spec, total_updates, seed, aux={"post_critic": critic})


PDPPO.batch_geometry = PPO.batch_geometry  # type: ignore[attr-defined]  (resume refuses geometry changes)
