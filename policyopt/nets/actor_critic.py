"""Actor-critic networks for vector observations and Discrete / MultiDiscrete / Box actions."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from policyopt.nets import distributions as D

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "gelu": F.gelu, "silu": F.silu}


@dataclass(frozen=True)
class ActionSpec:
    """What the policy head must produce, derived from a gymnasium action space.

    ``kind`` is ``"discrete"``, ``"multidiscrete"`` or ``"box"``; ``nvec`` holds the category
    counts (one entry for Discrete); ``low``/``high`` the Box bounds; ``offset`` the space's start.
    """

    kind: str
    nvec: tuple[int, ...] = ()
    shape: tuple[int, ...] = ()
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()
    offset: tuple[int, ...] = ()

    @property
    def head_size(self) -> int:
        return sum(self.nvec) if self.kind != "box" else int(np.prod(self.shape))

    @staticmethod
    def from_space(space) -> ActionSpec:
        from gymnasium import spaces

        if isinstance(space, spaces.Discrete):
            return ActionSpec("discrete", (int(space.n),), (), offset=(int(space.start),))
        if isinstance(space, spaces.MultiDiscrete):
            if space.nvec.ndim != 1:
                raise ValueError(f"MultiDiscrete action spaces must be 1-D, got nvec shape {space.nvec.shape}")
            return ActionSpec("multidiscrete", tuple(int(n) for n in space.nvec), space.shape,
                              offset=tuple(int(s) for s in space.start))
        if isinstance(space, spaces.Box):
            if not np.issubdtype(space.dtype, np.floating):
                raise ValueError(f"Box action spaces must be floating point, got dtype {space.dtype}")
            return ActionSpec("box", (), space.shape, tuple(space.low.ravel().tolist()),
                              tuple(space.high.ravel().tolist()))
        raise ValueError(
            f"unsupported action space {space!r}: policyopt's actor-critic supports Discrete, "
            "MultiDiscrete and Box (wrap other spaces, e.g. flatten a Dict, before training)"
        )


class MLP(nn.Module):
    """Linear layers with an activation after each. The forward calls ``F.linear`` directly:
    for networks this small, ``nn.Module.__call__`` dispatch costs as much as the maths."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], activation: str):
        super().__init__()
        dims = (in_dim, *hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = ACTIVATIONS[activation]
        self.out_dim = dims[-1]

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = self.act(F.linear(x, layer.weight, layer.bias))
        return x


def _orthogonal(module: nn.Module, gain: float) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight, gain)
            nn.init.zeros_(m.bias)


class ActorCritic(nn.Module):
    """Separate (default) or shared MLP torsos with a policy head and a scalar value head.

    Orthogonal initialisation with gains sqrt(2) / 0.01 (policy) / 1 (value), as in the PPO
    reference implementation (Engstrom et al., 2020; Andrychowicz et al., 2021, "What Matters in
    On-Policy RL"). Box actions use a state-independent log standard deviation.
    """

    def __init__(self, obs_dim: int, spec: ActionSpec, hidden: tuple[int, ...] = (64, 64),
                 activation: str = "tanh", shared: bool = False, init_log_std: float = 0.0):
        super().__init__()
        self.spec = spec
        self.pi_torso = MLP(obs_dim, hidden, activation)
        self.vf_torso = None if shared else MLP(obs_dim, hidden, activation)
        self.pi_head = nn.Linear(self.pi_torso.out_dim, spec.head_size)
        self.vf_head = nn.Linear(self.pi_torso.out_dim, 1)
        _orthogonal(self, math.sqrt(2))
        _orthogonal(self.pi_head, 0.01)
        _orthogonal(self.vf_head, 1.0)
        self.log_std = nn.Parameter(torch.full((spec.head_size,), init_log_std)) if spec.kind == "box" else None

    def heads(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``obs [B, obs_dim]`` -> (policy parameters ``[B, head]``, values ``[B]``)."""
        h = self.pi_torso.forward(obs)
        hv = h if self.vf_torso is None else self.vf_torso.forward(obs)
        v = F.linear(hv, self.vf_head.weight, self.vf_head.bias).squeeze(-1)
        return F.linear(h, self.pi_head.weight, self.pi_head.bias), v

    def value(self, obs: Tensor) -> Tensor:
        torso = self.pi_torso if self.vf_torso is None else self.vf_torso
        return F.linear(torso.forward(obs), self.vf_head.weight, self.vf_head.bias).squeeze(-1)

    def act(self, obs: Tensor, mask: Tensor | None, generator: torch.Generator | None,
            deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Sample actions; returns ``(actions, log_prob [B], value [B])``. Call under no_grad."""
        params, values = self.heads(obs)
        kind = self.spec.kind
        if kind == "box":
            actions = D.normal_sample(params, self.log_std, generator, deterministic)
            logp, _ = D.normal_logp_entropy(params, self.log_std, actions)
            return actions, logp, values
        params = D.masked_logits(params, mask)
        if kind == "discrete":
            actions = D.categorical_sample(params, generator, deterministic)
            logp = torch.log_softmax(params, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        else:
            actions = D.multi_categorical_sample(params, self.spec.nvec, generator, deterministic)
            logp, _ = D.multi_categorical_logp_entropy(params, actions, self.spec.nvec)
        return actions, logp, values

    def evaluate(self, obs: Tensor, actions: Tensor, mask: Tensor | None,
                 entropy_grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """``(log_prob [B], entropy [B], value [B])`` of given actions, with gradients (for the
        entropy only when ``entropy_grad``: without an entropy bonus it is just a statistic)."""
        params, values = self.heads(obs)
        kind = self.spec.kind
        if kind == "box":
            logp, ent = D.normal_logp_entropy(params, self.log_std, actions)
        elif kind == "discrete":
            logp, ent = D.categorical_logp_entropy(D.masked_logits(params, mask), actions, entropy_grad)
        else:
            logp, ent = D.multi_categorical_logp_entropy(D.masked_logits(params, mask), actions, self.spec.nvec)
        return logp, ent, values

    def to_env_actions(self, actions: Tensor) -> np.ndarray:
        """Convert sampled actions to what the vector env expects (offsets added, Box clipped)."""
        a = actions.numpy()
        spec = self.spec
        if spec.kind == "box":
            low = np.asarray(spec.low, dtype=a.dtype).reshape(spec.shape)
            high = np.asarray(spec.high, dtype=a.dtype).reshape(spec.shape)
            return np.clip(a.reshape((-1, *spec.shape)), low, high)
        if spec.kind == "discrete":
            return a + spec.offset[0] if spec.offset[0] else a
        return a + np.asarray(spec.offset, dtype=a.dtype)
