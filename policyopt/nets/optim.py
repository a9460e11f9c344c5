"""One optimiser step, the same for every algorithm: zero the gradients, backward, the global gradient
norm (clipped when a limit is set), step.

``max_grad_norm`` means the same everywhere: a float > 0 clips the global L2 norm of the gradient to it
(``torch.nn.utils.clip_grad_norm_``); ``None`` does not clip. The returned norm is always the one
*before* clipping (``stats/grad_norm`` in docs/metrics.md), a 0-d tensor so no step waits on the host.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from policyopt.nets.flat import FlatAdam


def optimizer_step(optimizer: torch.optim.Optimizer | FlatAdam, params: Iterable[Tensor], loss: Tensor | None,
                   max_grad_norm: float | None) -> Tensor:
    """Zero ``optimizer``'s gradients (set to None), ``loss.backward()``, take the global L2 norm of the
    gradients of ``params`` — clipped to ``max_grad_norm`` when it is not None, only measured when it is —
    then ``optimizer.step()``. Returns the pre-clip norm as a 0-d tensor (no host sync).

    ``loss=None`` skips zeroing and backward: the gradients are already there (one backward that fed
    two optimisers, as for lm_ppo's critic). A :class:`FlatAdam` owns its buffer and its clip, so it
    takes the step itself (``params`` is not read; ``max_grad_norm`` must match the one it was built with).
    """
    if isinstance(optimizer, FlatAdam):
        if max_grad_norm != optimizer.max_grad_norm:
            raise ValueError(f"optimizer_step: max_grad_norm={max_grad_norm}, but the FlatAdam clips at "
                             f"{optimizer.max_grad_norm}")
        return optimizer.step() if loss is None else optimizer.backward_step(loss)
    params = list(params)
    if loss is not None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
    if max_grad_norm is None:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None], foreach=True)
    else:
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm, foreach=True)
    optimizer.step()
    return norm
