r"""KL-divergence estimators from samples (Schulman, 2020, "Approximating KL Divergence").

With :math:`\log r = \log\pi_{ref}(a) - \log\pi(a)` for :math:`a \sim \pi`:
k1 = :math:`-\log r` (unbiased, high variance), k2 = :math:`\tfrac12(\log r)^2` (biased, low variance),
k3 = :math:`(r - 1) - \log r` (unbiased, non-negative, low variance).
"""

from __future__ import annotations

from torch import Tensor


def kl_estimate(logp: Tensor, ref_logp: Tensor, kind: str = "k3") -> Tensor:
    """Per-sample estimate of KL(pi || pi_ref); same shape as the inputs."""
    log_r = ref_logp - logp
    if kind == "k1":
        return -log_r
    if kind == "k2":
        return 0.5 * log_r**2
    if kind == "k3":
        return log_r.exp() - 1.0 - log_r
    raise ValueError(f"unknown KL estimator {kind!r}: expected 'k1', 'k2' or 'k3'")
