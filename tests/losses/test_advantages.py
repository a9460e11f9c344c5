"""GAE and Monte-Carlo returns against values computed by hand."""

import math

import pytest
import torch

from policyopt.losses import discounted_returns, gae, normalize

G, L = 0.9, 0.8


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 1)


def test_gae_truncation_bootstraps_termination_does_not():
    # One env, 5 steps: episode A = steps 0-1 truncated at 1; episode B = steps 2-3 terminated at 3;
    # episode C = step 4, cut by the end of the rollout (bootstrap from next value 5.0).
    r = t(1.0, 2.0, 3.0, 4.0, 5.0)
    v = t(0.5, 1.0, 1.5, 2.0, 2.5)
    nv = t(1.0, 10.0, 2.0, 99.0, 5.0)  # step 1's next value is the true final obs value (10)
    term = t(0, 0, 0, 1, 0).bool()
    end = t(0, 1, 0, 1, 0).bool()
    adv, ret = gae(r, v, nv, term, end, G, L)
    d4 = 5.0 + G * 5.0 - 2.5
    d3 = 4.0 - 2.0                         # terminated: no bootstrap
    d2 = 3.0 + G * 2.0 - 1.5
    d1 = 2.0 + G * 10.0 - 1.0             # truncated: bootstraps from the final observation
    d0 = 1.0 + G * 1.0 - 0.5
    a4, a3 = d4, d3
    a2 = d2 + G * L * a3
    a1 = d1                                # recursion cut at the episode end
    a0 = d0 + G * L * a1
    expected = [a0, a1, a2, a3, a4]
    assert adv.squeeze(1).tolist() == pytest.approx(expected, rel=1e-12)
    assert ret.squeeze(1).tolist() == pytest.approx([a + b for a, b in zip(expected, v.squeeze(1).tolist())])


def test_gae_lambda_one_is_discounted_return_minus_value_and_batch_columns_are_independent():
    r = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])
    v = torch.zeros(3, 2)
    nv = torch.zeros(3, 2)
    term = torch.zeros(3, 2, dtype=torch.bool)
    adv, _ = gae(r, v, nv, term, term, 1.0, 1.0)
    assert adv[:, 0].tolist() == [3.0, 2.0, 1.0]
    assert adv[:, 1].tolist() == [3.0, 3.0, 2.0]


def test_discounted_returns_truncation_termination_and_rollout_end():
    r = t(1.0, 1.0, 1.0, 1.0)
    nv = t(0.0, 7.0, 0.0, 3.0)
    term = t(1, 0, 0, 0).bool()
    end = t(1, 1, 0, 0).bool()
    g = discounted_returns(r, nv, term, end, G).squeeze(1).tolist()
    assert g[3] == pytest.approx(1 + G * 3.0)          # rollout end: bootstrap
    assert g[2] == pytest.approx(1 + G * g[3])
    assert g[1] == pytest.approx(1 + G * 7.0)          # truncated: bootstrap from final obs
    assert g[0] == pytest.approx(1.0)                  # terminated


def test_normalize_masked():
    x = torch.tensor([1.0, 2.0, 3.0, 100.0])
    m = torch.tensor([True, True, True, False])
    y = normalize(x, m)
    assert y[3] == 0.0
    assert y[:3].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-6)
    assert math.isclose(float(normalize(torch.tensor([1.0, 3.0])).std()), 1.0, rel_tol=1e-6)
