"""``optimizer_step``: the one zero-grad / backward / clip / step of every algorithm, and the one meaning of
``max_grad_norm`` (a float > 0 clips, None does not; the returned norm is the pre-clip one)."""

import copy

import pytest
import torch
from torch import nn

from policyopt.algos.dpo import DPOConfig
from policyopt.algos.grpo import GRPOConfig
from policyopt.core.config import ConfigError, build
from policyopt.nets.flat import FlatAdam
from policyopt.nets.optim import optimizer_step


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))


def loss_of(net: nn.Module) -> torch.Tensor:
    x = torch.linspace(-2.0, 2.0, 32).reshape(8, 4)
    return net(x).pow(2).sum() * 10.0


def hand_grads(net: nn.Module) -> tuple[list[torch.Tensor], torch.Tensor]:
    grads = torch.autograd.grad(loss_of(net), list(net.parameters()))
    return grads, torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).float()


def test_returns_pre_clip_norm_and_leaves_gradient_clipped_to_max_grad_norm():
    net = mlp()
    grads, norm = hand_grads(net)
    assert norm > 1.0, "the test needs a gradient larger than the limit"
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    out = optimizer_step(opt, net.parameters(), loss_of(net), max_grad_norm=1.0)
    assert out.dim() == 0
    torch.testing.assert_close(out, norm, rtol=1e-6, atol=0.0)
    after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in net.parameters()]))
    torch.testing.assert_close(after, torch.tensor(1.0), rtol=1e-5, atol=0.0)
    for p, g in zip(net.parameters(), grads):
        torch.testing.assert_close(p.grad, g / norm, rtol=1e-5, atol=1e-7)


def test_none_leaves_gradient_unclipped_and_still_reports_its_norm():
    net = mlp()
    grads, norm = hand_grads(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    out = optimizer_step(opt, net.parameters(), loss_of(net), max_grad_norm=None)
    torch.testing.assert_close(out, norm, rtol=1e-6, atol=0.0)
    for p, g in zip(net.parameters(), grads):
        assert torch.equal(p.grad, g)


def test_loss_none_clips_and_steps_the_gradients_a_shared_backward_left():
    net = mlp()
    grads, norm = hand_grads(net)
    loss_of(net).backward()                   # e.g. lm_ppo: one backward feeds the policy and the critic
    before = [p.detach().clone() for p in net.parameters()]
    out = optimizer_step(torch.optim.SGD(net.parameters(), lr=0.1), net.parameters(), None, max_grad_norm=1.0)
    torch.testing.assert_close(out, norm, rtol=1e-6, atol=0.0)
    for p, b, g in zip(net.parameters(), before, grads):
        torch.testing.assert_close(p.detach(), b - 0.1 * g / norm, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("clip", [None, 1.0])
def test_flat_adam_path_equals_torch_adam_path_for_one_step(clip):
    ref = mlp()
    flat = copy.deepcopy(ref)
    norm_ref = optimizer_step(torch.optim.Adam(ref.parameters(), lr=1e-2), ref.parameters(), loss_of(ref), clip)
    flat_opt = FlatAdam(flat, lr=1e-2, max_grad_norm=clip)
    norm_flat = optimizer_step(flat_opt, flat.parameters(), loss_of(flat), clip)
    torch.testing.assert_close(norm_flat, norm_ref, rtol=1e-6, atol=0.0)
    for a, b in zip(ref.parameters(), flat.parameters()):
        torch.testing.assert_close(a, b, rtol=0.0, atol=1e-6)


def test_flat_adam_refuses_a_different_max_grad_norm():
    net = mlp()
    with pytest.raises(ValueError, match="max_grad_norm"):
        optimizer_step(FlatAdam(net, lr=1e-2, max_grad_norm=0.5), net.parameters(), loss_of(net), None)


@pytest.mark.parametrize("cls", [GRPOConfig, DPOConfig])
def test_max_grad_norm_zero_is_refused_and_null_means_no_clipping(cls):
    with pytest.raises(ConfigError, match=r"max_grad_norm: must be > 0, or null for no clipping \(got 0\)"):
        build(cls, {"max_grad_norm": 0})
    assert build(cls, {"max_grad_norm": None}).max_grad_norm is None
    assert build(cls, {}).max_grad_norm == 1.0
