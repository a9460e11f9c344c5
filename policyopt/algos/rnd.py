"""Random Network Distillation as an option of PPO (``ppo.rnd: {...}``).

Burda, Edwards, Storkey & Klimov, 2018, "Exploration by Random Network Distillation" (arXiv:1810.12894).
A fixed random network ``f`` embeds each observation reached; a predictor ``f_hat`` is trained to match it,
so its error is large on rarely seen observations: that error is the intrinsic reward. As in the paper:

* the intrinsic stream is **non-episodic** (its return runs through episode ends) with its own discount
  ``gamma_int`` and its own critic ``V_I`` (separate value head); the extrinsic stream keeps PPO's
  ``gamma`` and value head;
* intrinsic rewards are divided by the running std of the discounted intrinsic return;
* observations are whitened with running statistics and clipped to ``[-obs_clip, obs_clip]`` before
  entering either network (the statistics start from the first batch instead of a random-agent warm-up);
* the policy maximises ``ext_coef * A_E + int_coef * A_I``; the predictor trains on a random
  ``update_proportion`` of each minibatch.

:class:`RNDBonus` plugs into :class:`~policyopt.algos.ppo.PPO` as an *auxiliary learner*: ``prepare``
turns the rollout's advantages into combined ones, ``step`` trains the predictor and ``V_I`` on the same
minibatch indices as the policy, with an optimizer of its own. Its whole state is in the checkpoint.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from policyopt.algos.onpolicy import load_optimizer_tree, optimizer_tree
from policyopt.core.config import configclass
from policyopt.data.normalize import RunningMeanStd
from policyopt.data.rollout import Rollout
from policyopt.losses import gae, value_loss
from policyopt.losses.rnd import (
    combine_advantages,
    discounted_forward_sum,
    prediction_error,
    predictor_loss,
    whiten_clip,
)
from policyopt.nets.optim import optimizer_step
from policyopt.nets.rnd import RNDNetworks

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]


@configclass
class RNDConfig:
    int_coef: NonNegative = 1.0
    """Weight of the intrinsic advantage (``c_I``; 1 in the paper)."""
    ext_coef: NonNegative = 2.0
    """Weight of the extrinsic advantage (``c_E``; 2 in the paper)."""
    gamma_int: Fraction = 0.99
    """Discount of the non-episodic intrinsic stream (0.99 in the paper; PPO's ``gamma`` is extrinsic)."""
    gae_lambda_int: Fraction = 0.95
    """GAE lambda of the intrinsic stream."""
    learning_rate: Annotated[float, Field(gt=0.0)] = 1e-3
    """Adam learning rate of the predictor and the intrinsic critic (own optimizer, not annealed)."""
    update_proportion: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    """Fraction of each minibatch the predictor trains on (the paper: 0.25 with 128 envs; use < 1 to slow
    the decay of the bonus when there are many environment copies)."""
    feature_dim: Annotated[int, Field(gt=0)] = 64
    """Output size of the target and predictor networks."""
    hidden_sizes: tuple[Annotated[int, Field(gt=0)], ...] = (64, 64)
    """Hidden widths of the target (the predictor has one more layer of the last width)."""
    value_hidden_sizes: tuple[Annotated[int, Field(gt=0)], ...] = (64, 64)
    """Hidden widths of the intrinsic critic ``V_I``."""
    obs_clip: Annotated[float, Field(gt=0.0)] = 5.0
    """Clip of the whitened observation fed to target and predictor (5 in the paper)."""
    normalize_int_reward: bool = True
    """Divide intrinsic rewards by the running std of the discounted intrinsic return."""
    max_grad_norm: Annotated[float, Field(gt=0.0)] | None = 0.5
    """Gradient-norm clip of the predictor + intrinsic-critic step; None disables it."""


class RNDBonus:
    """The RND auxiliary learner: networks, optimizer, normalisers and the non-episodic return carry."""

    def __init__(self, config: RNDConfig, obs_dim: int, seed: int):
        self.config = config
        with torch.random.fork_rng(devices=[]):   # own init stream: PPO's networks are unaffected
            torch.manual_seed(seed)
            self.nets = RNDNetworks(obs_dim, config.feature_dim, config.hidden_sizes, config.value_hidden_sizes)
        self.params = self.nets.trainable_parameters()
        self.opt = torch.optim.Adam(self.params, lr=config.learning_rate, eps=1e-5, fused=True)
        self.obs_rms = RunningMeanStd((obs_dim,))
        self.ret_rms = RunningMeanStd(())
        self.carry: np.ndarray | None = None          # [N] discounted intrinsic return R_{t-1}
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.flat: tuple[Tensor, Tensor, Tensor] = ()  # (obs, whitened next obs, intrinsic returns) [B, ...]
        self.stats: dict[str, float] = {}
        self.losses: list[Tensor] = []

    def prepare(self, batch: Rollout, adv: Tensor, ret: Tensor) -> Tensor:
        """Intrinsic rewards, intrinsic GAE and the combined advantages ``[T, N]`` of ``batch``."""
        cfg = self.config
        if batch.last_obs is None:
            raise ValueError("RND needs Rollout.last_obs (the observation after the rollout's last step)")
        T, N, D = batch.obs.shape
        next_obs = torch.cat([batch.obs[1:], batch.last_obs[None]])      # s_{t+1} of step t  [T, N, D]
        self.obs_rms.update(next_obs.reshape(-1, D).double().numpy())
        x = whiten_clip(next_obs, torch.from_numpy(self.obs_rms.mean).float(),
                        torch.from_numpy(self.obs_rms.var).float(), cfg.obs_clip)
        with torch.no_grad():
            pred, target = self.nets.features(x.reshape(T * N, D))
            raw = prediction_error(pred, target).reshape(T, N)
            v_int = self.nets.intrinsic_value(torch.cat([batch.obs, batch.last_obs[None]]))   # [T + 1, N]
        r_int = raw
        if cfg.normalize_int_reward:
            carry = torch.zeros(N, dtype=torch.float64) if self.carry is None else torch.from_numpy(self.carry)
            sums, last = discounted_forward_sum(raw.double(), carry, cfg.gamma_int)
            self.carry = last.numpy().copy()
            self.ret_rms.update(sums.reshape(-1).numpy())
            r_int = raw / float(np.sqrt(self.ret_rms.var + 1e-8))
        never = torch.zeros(T, N, dtype=torch.bool)                        # non-episodic: no cuts
        adv_int, ret_int = gae(r_int, v_int[:-1], v_int[1:], never, never, cfg.gamma_int, cfg.gae_lambda_int)
        v = batch.valid
        self.flat = (batch.obs[v], x[v], ret_int[v])
        self.stats = {"rnd/intrinsic_reward_raw": float(raw[v].mean()), "rnd/intrinsic_reward": float(r_int[v].mean()),
                      "rnd/intrinsic_adv_std": float(adv_int[v].std()) if int(v.sum()) > 1 else 0.0}
        self.losses = []
        return combine_advantages(adv, adv_int, cfg.ext_coef, cfg.int_coef)

    def step(self, idx: Tensor | None) -> None:
        """One optimiser step of predictor + intrinsic critic on the minibatch ``idx`` (None = all)."""
        obs, x, ret = self.flat if idx is None else (t[idx] for t in self.flat)
        pred, target = self.nets.features(x)
        p = self.config.update_proportion
        keep = None if p >= 1.0 else torch.from_numpy(self.rng.random(x.shape[0]) < p)
        fwd = predictor_loss(pred, target, keep)
        vl = value_loss(self.nets.intrinsic_value(obs), ret)
        optimizer_step(self.opt, self.params, fwd + vl, self.config.max_grad_norm)
        self.losses.append(torch.stack([fwd.detach(), vl.detach()]))

    def metrics(self) -> dict[str, float]:
        out = dict(self.stats)
        if self.losses:
            fwd, vl = torch.stack(self.losses).mean(0).tolist()
            out |= {"rnd/predictor_loss": fwd, "rnd/intrinsic_value_loss": vl}
        return out | {"rnd/intrinsic_return_std": float(np.sqrt(self.ret_rms.var))}

    def intrinsic_reward(self, next_obs: Tensor) -> Tensor:
        """Unnormalised intrinsic reward ``[B]`` of reaching ``next_obs [B, obs_dim]`` (frozen statistics)."""
        x = whiten_clip(next_obs, torch.from_numpy(self.obs_rms.mean).float(),
                        torch.from_numpy(self.obs_rms.var).float(), self.config.obs_clip)
        with torch.no_grad():
            return prediction_error(*self.nets.features(x))

    def state_dict(self) -> dict:
        return {"nets": dict(self.nets.state_dict()), "optimizer": optimizer_tree(self.opt),
                "obs_rms": self.obs_rms.state_dict(), "ret_rms": self.ret_rms.state_dict(),
                "carry": None if self.carry is None else self.carry.copy(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.nets.load_state_dict(state["nets"])
        load_optimizer_tree(self.opt, state["optimizer"])
        self.obs_rms.load_state_dict(state["obs_rms"])
        self.ret_rms.load_state_dict(state["ret_rms"])
        self.carry = None if state["carry"] is None else np.asarray(state["carry"], np.float64).copy()
        self.rng.bit_generator.state = state["rng"]
