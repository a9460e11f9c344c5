"""Networks of the off-policy family: Q-networks (plain and dueling), ensembles of critics evaluated
in one batched matmul, and the tanh-squashed Gaussian actor of SAC.

Everything calls ``F.linear`` / ``torch.baddbmm`` directly: for networks this small the per-module
dispatch of ``nn.Sequential`` costs as much as the maths. Initialisation is PyTorch's ``nn.Linear``
default (uniform in ``+-1/sqrt(fan_in)``), as in Stable-Baselines3's DQN and SAC.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from policyopt.nets.actor_critic import ACTIVATIONS, MLP

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class QNetwork(nn.Module):
    """``Q(s, .)``: an MLP torso and either one linear head ``[B, A]`` or a dueling pair
    (Wang et al., 2016, "Dueling Network Architectures for Deep RL", arXiv:1511.06581)::

        Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...], activation: str = "relu",
                 dueling: bool = False):
        super().__init__()
        self.torso = MLP(obs_dim, hidden, activation)
        self.head = nn.Linear(self.torso.out_dim, n_actions)
        self.value_head = nn.Linear(self.torso.out_dim, 1) if dueling else None

    def forward(self, obs: Tensor) -> Tensor:
        h = self.torso.forward(obs)
        adv = F.linear(h, self.head.weight, self.head.bias)
        if self.value_head is None:
            return adv
        v = F.linear(h, self.value_head.weight, self.value_head.bias)
        return v + adv - adv.mean(-1, keepdim=True)


class EnsembleMLP(nn.Module):
    """``K`` independent MLPs evaluated together: weights ``[K, in, out]`` and one ``baddbmm`` per
    layer. ``x [B, in]`` (shared input) or ``[K, B, in]`` -> ``[K, B, out]``. Used for SAC's twin
    critics (one matmul instead of two)."""

    def __init__(self, k: int, in_dim: int, hidden: tuple[int, ...], out_dim: int, activation: str = "relu"):
        super().__init__()
        dims = (in_dim, *hidden, out_dim)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:]):
            bound = 1.0 / math.sqrt(a)
            self.weights.append(nn.Parameter(torch.empty(k, a, b).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(k, 1, b).uniform_(-bound, bound)))
        self.k, self.act = k, ACTIVATIONS[activation]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.expand(self.k, *x.shape)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = self.act(x)
        return x


class SquashedGaussianActor(nn.Module):
    """SAC's policy: ``u ~ N(mu(s), sigma(s))``, ``a = tanh(u)`` in ``[-1, 1]^D`` (rescaled to the
    env's bounds by the caller). Log-density with the change-of-variables correction (Haarnoja
    et al., 2018, arXiv:1801.01290, appendix C)::

        log pi(a|s) = log N(u; mu, sigma) - sum_d log(1 - tanh(u_d)^2)
        log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u))        (numerically stable form)
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], activation: str = "relu"):
        super().__init__()
        self.torso = MLP(obs_dim, hidden, activation)
        self.mu = nn.Linear(self.torso.out_dim, act_dim)
        self.log_std = nn.Linear(self.torso.out_dim, act_dim)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        h = self.torso.forward(obs)
        mu = F.linear(h, self.mu.weight, self.mu.bias)
        log_std = F.linear(h, self.log_std.weight, self.log_std.bias).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return mu, log_std

    def sample(self, obs: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Reparameterised sample ``a [B, D]`` in ``[-1, 1]`` and its log-probability ``[B]``."""
        mu, log_std = self.forward(obs)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
        return squashed_sample_logp(mu, log_std, eps)

    def mode(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.forward(obs)[0])


def squashed_sample_logp(mu: Tensor, log_std: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """``a = tanh(mu + exp(log_std) * eps)`` and ``log pi(a)`` with the tanh correction, ``[B]``."""
    u = mu + log_std.exp() * eps
    normal_logp = (-0.5 * eps * eps - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    correction = (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
    return torch.tanh(u), normal_logp - correction


def polyak_update(target: list[Tensor], online: list[Tensor], tau: float) -> None:
    """``theta_targ <- (1 - tau) theta_targ + tau theta`` for all tensors at once (``tau = 1``: copy)."""
    with torch.no_grad():
        if tau >= 1.0:
            torch._foreach_copy_(target, online)
        else:
            torch._foreach_lerp_(target, online, tau)
