"""TD targets against hand-computed values."""

import math

import pytest
import torch

from policyopt.losses import td
from policyopt.nets.qnets import squashed_sample_logp

G = 0.9


def test_n_step_return_termination_vs_truncation():
    # three windows of n=3, rewards 1, 2, 4
    r = torch.tensor([[1.0, 2.0, 4.0]] * 4)
    f, t = False, True
    term = torch.tensor([[f, f, f], [f, t, f], [f, f, f], [f, f, f]])
    ended = torch.tensor([[f, f, f], [f, t, f], [f, t, f], [f, f, f]])   # row 2: truncation at k=1
    avail = torch.tensor([[t, t, t], [t, t, t], [t, t, t], [t, t, f]])   # row 3: only 2 steps stored
    g, disc, m = td.n_step_return(r, term, ended, avail, G)
    assert m.tolist() == [3, 2, 2, 2]
    torch.testing.assert_close(g, torch.tensor([1 + 0.9 * 2 + 0.81 * 4, 1 + 0.9 * 2, 1 + 0.9 * 2, 1 + 0.9 * 2]))
    # full window: gamma^3; termination: 0; truncation keeps gamma^2 (bootstrap from the final obs)
    torch.testing.assert_close(disc, torch.tensor([0.729, 0.0, 0.81, 0.81]))
    y = td.td_target(g, disc, torch.tensor([10.0, 10.0, 10.0, 10.0]))
    torch.testing.assert_close(y, torch.tensor([1 + 1.8 + 3.24 + 7.29, 2.8, 2.8 + 8.1, 2.8 + 8.1]))


def test_one_step_termination_at_first_step():
    g, disc, m = td.n_step_return(torch.tensor([[5.0, 7.0]]), torch.tensor([[True, False]]),
                                  torch.tensor([[True, False]]), torch.tensor([[True, True]]), G)
    assert (g.item(), disc.item(), m.item()) == (5.0, 0.0, 1)


def test_dqn_and_double_dqn_targets():
    q_target = torch.tensor([[1.0, 5.0, 3.0], [2.0, 0.0, 4.0]])
    q_online = torch.tensor([[9.0, 0.0, 1.0], [0.0, 8.0, 1.0]])
    rew, disc = torch.tensor([1.0, 0.5]), torch.tensor([0.9, 0.0])
    torch.testing.assert_close(td.dqn_target(rew, disc, q_target), torch.tensor([1 + 0.9 * 5, 0.5]))
    # double DQN: argmax by online (0 and 1), value by target (1.0 and 0.0)
    torch.testing.assert_close(td.dqn_target(rew, disc, q_target, q_next_online=q_online), torch.tensor([1.9, 0.5]))
    mask = torch.tensor([[True, False, True], [True, True, True]])
    torch.testing.assert_close(td.dqn_target(rew, disc, q_target, mask), torch.tensor([1 + 0.9 * 3, 0.5]))
    # masked double: online's best allowed action in row 0 is 0 -> target 1.0
    torch.testing.assert_close(td.dqn_target(rew, torch.tensor([0.9, 0.9]), q_target, mask, q_online),
                               torch.tensor([1.9, 0.5 + 0.0]))


def test_sarsa_and_expected_sarsa():
    q = torch.tensor([[1.0, 3.0], [2.0, -2.0]])
    rew, disc = torch.tensor([0.0, 1.0]), torch.tensor([0.5, 0.5])
    torch.testing.assert_close(td.sarsa_target(rew, disc, q, torch.tensor([0, 1])), torch.tensor([0.5, 0.0]))
    probs = td.epsilon_greedy_probs(q, 0.2)
    torch.testing.assert_close(probs, torch.tensor([[0.1, 0.9], [0.9, 0.1]]))
    torch.testing.assert_close(td.expected_sarsa_target(rew, disc, q, probs),
                               torch.tensor([0.5 * (0.1 + 2.7), 1 + 0.5 * (1.8 - 0.2)]))
    masked = td.epsilon_greedy_probs(torch.tensor([[5.0, 1.0, 0.0]]), 0.3, torch.tensor([[False, True, True]]))
    torch.testing.assert_close(masked, torch.tensor([[0.0, 0.85, 0.15]]))


def test_sac_soft_target_actor_and_temperature_losses():
    y = td.sac_soft_target(torch.tensor([1.0]), torch.tensor([0.99]), torch.tensor([2.0]), torch.tensor([3.0]),
                           torch.tensor([-1.5]), 0.2)
    assert y.item() == pytest.approx(1 + 0.99 * (2.0 + 0.3))
    assert td.sac_actor_loss(torch.tensor([-1.0, 1.0]), torch.tensor([2.0, 4.0]), 0.5).item() == pytest.approx(-3.0)
    log_alpha = torch.tensor(math.log(0.1), requires_grad=True)
    logp = torch.tensor([-0.5, 0.5])   # mean entropy 0; target entropy -1 -> alpha should go down
    loss = td.sac_temperature_loss(log_alpha, logp, -1.0)
    assert loss.item() == pytest.approx(-math.log(0.1) * (0.0 - 1.0))
    loss.backward()
    assert log_alpha.grad.item() == pytest.approx(1.0)  # = -(mean logp + H_target) = 1 > 0: descent lowers alpha


def test_discrete_sac_soft_value():
    probs = torch.tensor([[0.25, 0.75]])
    v = td.discrete_sac_soft_value(torch.tensor([[1.0, 2.0]]), probs, probs.log(), 0.1)
    expected = 0.25 * (1 - 0.1 * math.log(0.25)) + 0.75 * (2 - 0.1 * math.log(0.75))
    assert v.item() == pytest.approx(expected)


def test_squashed_gaussian_logp_matches_change_of_variables():
    mu, log_std, eps = torch.tensor([[0.3, -0.2]]), torch.tensor([[-0.5, 0.1]]), torch.tensor([[0.7, -1.2]])
    a, logp = squashed_sample_logp(mu, log_std, eps)
    u = mu + log_std.exp() * eps
    normal = torch.distributions.Normal(mu, log_std.exp()).log_prob(u).sum(-1)
    expected = normal - torch.log(1 - torch.tanh(u) ** 2).sum(-1)
    torch.testing.assert_close(a, torch.tanh(u))
    torch.testing.assert_close(logp, expected)


def test_huber():
    torch.testing.assert_close(td.huber(torch.tensor([0.5, -2.0])), torch.tensor([0.125, 1.5]))
