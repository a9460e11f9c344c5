"""Pure pieces of Random Network Distillation (Burda, Edwards, Storkey & Klimov, 2018, "Exploration by
Random Network Distillation", arXiv:1810.12894), as functions on batch-first tensors.

* the observation fed to both networks is whitened with running statistics and clipped (Sec. 2.4):
  :math:`\\tilde x = \\mathrm{clip}((x - \\mu) / \\sigma, -c, c)`, ``c = 5`` in the paper;
* the intrinsic reward of a transition into ``x`` is the predictor's error on it,
  :math:`i = \\tfrac1K \\lVert \\hat f(\\tilde x) - f(\\tilde x) \\rVert^2` (mean over the ``K`` features, as in
  the paper's code);
* the predictor loss is the same error, averaged over the fraction of samples kept for training;
* intrinsic rewards are divided by a running std of the *non-episodic discounted intrinsic return*
  :math:`R_t = \\gamma_I R_{t-1} + i_t` (the "reward forward filter"), not by the std of the rewards;
* the policy advantage is :math:`A = c_E A_E + c_I A_I` (``c_E = 2, c_I = 1`` in the paper).
"""

from __future__ import annotations

import torch
from torch import Tensor


def whiten_clip(x: Tensor, mean: Tensor, var: Tensor, clip: float, eps: float = 1e-8) -> Tensor:
    """``clip((x - mean) / sqrt(var + eps), -clip, clip)``; ``x [..., D]``, ``mean, var [D]``."""
    return ((x - mean) / torch.sqrt(var + eps)).clamp(-clip, clip)


def prediction_error(predicted: Tensor, target: Tensor) -> Tensor:
    """Per-sample squared error averaged over features: ``[B, K], [B, K] -> [B]`` (the intrinsic
    reward before normalisation). The target is treated as a constant."""
    return (predicted - target.detach()).pow(2).mean(-1)


def predictor_loss(predicted: Tensor, target: Tensor, keep: Tensor | None = None) -> Tensor:
    """Mean prediction error over the kept samples (``keep [B]`` bool; Burda et al. train the
    predictor on a random fraction of each minibatch). Returns a scalar; 0 if nothing is kept."""
    err = prediction_error(predicted, target)
    if keep is None:
        return err.mean()
    k = keep.to(err.dtype)
    return (err * k).sum() / k.sum().clamp_min(1.0)


def discounted_forward_sum(rewards: Tensor, carry: Tensor, gamma: float) -> tuple[Tensor, Tensor]:
    """Non-episodic running discounted sum ``R_t = gamma * R_{t-1} + r_t`` along time.

    ``rewards [T, N]``, ``carry [N]`` (``R_{-1}``, kept across rollouts) -> ``(R [T, N], R_{T-1} [N])``.
    Episode ends do not reset it: the intrinsic stream of RND is non-episodic.
    """
    out = torch.empty_like(rewards)
    r = carry
    for t in range(rewards.shape[0]):
        r = gamma * r + rewards[t]
        out[t] = r
    return out, r


def combine_advantages(ext: Tensor, intrinsic: Tensor, ext_coef: float, int_coef: float) -> Tensor:
    """``ext_coef * A_E + int_coef * A_I`` (same shape)."""
    return ext_coef * ext + int_coef * intrinsic
