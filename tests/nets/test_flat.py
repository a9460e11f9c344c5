"""FlatAdam equals torch.optim.Adam(fused=True) + clip_grad_norm_ up to float rounding (the fused
kernel's vector/scalar split and the norm's summation order differ on one flat tensor)."""

import copy

import pytest
import torch

from policyopt.nets.flat import FlatAdam
from policyopt.nets.qnets import EnsembleMLP, QNetwork


@pytest.mark.parametrize("clip", [None, 0.5])
@pytest.mark.parametrize("make", [lambda: QNetwork(4, 3, (32, 32), dueling=True), lambda: EnsembleMLP(2, 5, (16,), 1)])
def test_flat_adam_matches_torch_adam(make, clip):
    torch.manual_seed(0)
    ref = make()
    ours = copy.deepcopy(ref)
    opt_ref = torch.optim.Adam(ref.parameters(), lr=1e-2, eps=1e-8, fused=True)
    opt = FlatAdam(ours, lr=1e-2, eps=1e-8, max_grad_norm=clip)
    for step in range(6):
        x = torch.randn(8, 4 if isinstance(ref, QNetwork) else 5)
        loss_ref = ref(x).pow(2).sum() * (step + 1)
        opt_ref.zero_grad(set_to_none=True)
        loss_ref.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(list(ref.parameters()), clip, foreach=True)
        opt_ref.step()
        opt.backward_step(ours(x).pow(2).sum() * (step + 1))
    for a, b in zip(ref.parameters(), ours.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # parameters and grads really live in the flat buffers
    base = opt.flat.data_ptr()
    assert all(base <= p.data_ptr() < base + 4 * opt.flat.numel() for p in ours.parameters())
    state = opt.state_dict()
    twin = FlatAdam(copy.deepcopy(make()), lr=1e-2)
    twin.load_state_dict(state)
    assert torch.equal(twin.exp_avg_sq, opt.exp_avg_sq) and float(twin.step_t) == 6.0
