"""One contiguous buffer for a small network's parameters and gradients, and a fused Adam step on it.

For networks with a few hundred thousand parameters, ``torch.optim.Adam.step`` and
``clip_grad_norm_`` cost more in per-tensor Python bookkeeping than in arithmetic. Here every
parameter (and its ``.grad``) is a view into one flat tensor, so the gradient norm is one reduction,
clipping one multiply and Adam one call of PyTorch's fused kernel (the same kernel as
``torch.optim.Adam(fused=True)``; Kingma & Ba, 2015, "Adam", arXiv:1412.6980). The result equals
``torch.optim.Adam(fused=True)`` + ``clip_grad_norm_`` up to float rounding (the kernel's vector /
scalar split falls differently on one flat tensor, and the norm is one reduction instead of a norm
of per-tensor norms); runs stay exactly reproducible and resumable.

Backward accumulates into the existing ``.grad`` views in place (PyTorch's AccumulateGrad adds into a
defined gradient when not building a graph), so :meth:`FlatAdam.zero_grad` zeroes one tensor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn


@contextlib.contextmanager
def denormals_flushed(enabled: bool = True) -> Iterator[None]:
    """Flush denormal floats to zero inside the block only (``torch.set_flush_denormal`` sets a CPU
    flag for the whole thread, which would otherwise also zero tiny floats in user data, JSON and
    numpy). Adam moments decaying into denormals can make a step several times slower on x86."""
    if not enabled:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


class FlatAdam:
    """Adam on the parameters of ``module`` re-homed into one flat buffer (call before any copy of
    the module is taken: a deep copy of a view copies the whole buffer)."""

    def __init__(self, module: nn.Module, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 max_grad_norm: float | None = None):
        params = [p for p in module.parameters() if p.requires_grad]
        n = sum(p.numel() for p in params)
        self.flat = torch.zeros(n)
        self.grad = torch.zeros(n)
        offset = 0
        for p in params:
            k = p.numel()
            self.flat[offset:offset + k].copy_(p.detach().reshape(-1))
            p.data = self.flat[offset:offset + k].view_as(p)
            p.grad = self.grad[offset:offset + k].view_as(p)
            offset += k
        self.params = params
        self.exp_avg, self.exp_avg_sq = torch.zeros(n), torch.zeros(n)
        self.step_t = torch.zeros((), dtype=torch.float32)
        self.lr, self.betas, self.eps, self.max_grad_norm = lr, betas, eps, max_grad_norm

    def zero_grad(self) -> None:
        self.grad.zero_()

    def step(self) -> Tensor:
        """Clip the global gradient norm (if configured) and take one Adam step; returns the
        pre-clip norm as a 0-d tensor (no host sync)."""
        norm = torch.linalg.vector_norm(self.grad)
        if self.max_grad_norm is not None:
            self.grad.mul_((self.max_grad_norm / (norm + 1e-6)).clamp_(max=1.0))
        self.step_t += 1  # the fused kernel reads the step count; torch.optim.Adam increments it first
        torch._fused_adam_([self.flat], [self.grad], [self.exp_avg], [self.exp_avg_sq], [], [self.step_t],
                           lr=self.lr, beta1=self.betas[0], beta2=self.betas[1], weight_decay=0.0, eps=self.eps,
                           amsgrad=False, maximize=False)
        return norm

    def backward_step(self, loss: Tensor) -> Tensor:
        self.zero_grad()
        loss.backward()
        return self.step()

    def state_dict(self) -> dict:
        return {"exp_avg": self.exp_avg.clone(), "exp_avg_sq": self.exp_avg_sq.clone(),
                "step": self.step_t.clone(), "numel": int(self.flat.numel())}

    def load_state_dict(self, state: dict) -> None:
        if int(state["numel"]) != self.flat.numel():
            raise ValueError(f"optimizer state is for {state['numel']} parameters, this network has "
                             f"{self.flat.numel()}")
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.step_t.copy_(state["step"])
