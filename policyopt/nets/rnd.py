"""Networks of Random Network Distillation (Burda et al., 2018, arXiv:1810.12894).

:class:`RNDNetworks` holds the fixed random *target* ``f``, the trained *predictor* ``f_hat`` (one layer
deeper than the target, as in the paper, so that it can fit it) and the *intrinsic critic* ``V_I`` —
the separate value head for the intrinsic stream, here a small network of its own so that the
actor-critic of the extrinsic task is left unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, act: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), act()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    for m in layers:
        if isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight, math.sqrt(2))
            nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)


class RNDNetworks(nn.Module):
    """``target``/``predictor``: ``[B, obs_dim] -> [B, feature_dim]``; ``intrinsic_value``: ``-> [B]``.

    The target's parameters are frozen (``requires_grad=False``) and never change after construction.
    """

    def __init__(self, obs_dim: int, feature_dim: int = 64, hidden: tuple[int, ...] = (64, 64),
                 value_hidden: tuple[int, ...] = (64, 64)):
        super().__init__()
        self.target = _mlp(obs_dim, hidden, feature_dim, nn.LeakyReLU)
        self.predictor = _mlp(obs_dim, (*hidden, hidden[-1] if hidden else feature_dim), feature_dim, nn.ReLU)
        self.value_net = _mlp(obs_dim, value_hidden, 1, nn.Tanh)
        nn.init.orthogonal_(self.value_net[-1].weight, 1.0)
        for p in self.target.parameters():
            p.requires_grad_(False)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [*self.predictor.parameters(), *self.value_net.parameters()]

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(predicted [B, K], target [B, K])`` for whitened observations ``x [B, obs_dim]``."""
        with torch.no_grad():
            target = self.target(x)
        return self.predictor(x), target

    def intrinsic_value(self, obs: Tensor) -> Tensor:
        """``V_I(obs)``: ``[..., obs_dim] -> [...]``."""
        return self.value_net(obs).squeeze(-1)
