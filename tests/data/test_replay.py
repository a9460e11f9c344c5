"""Replay storage: autoreset handling through the collector, n-step returns, prioritized sampling,
checkpoint round trip."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from policyopt.data.replay import ReplayBuffer, ReplaySpec, SumTree
from policyopt.runtime.replay_collector import ReplayCollector
from tests.runtime.toy_envs import register

register()


class RandomBehaviour:
    n = 2

    def explore(self, obs, mask, step, generator):
        logits = torch.zeros(obs.shape[0], self.n if mask is None else mask.shape[-1])
        if mask is not None:
            logits = torch.where(mask, logits, torch.full_like(logits, -1e9))
        return torch.distributions.Categorical(logits=logits).sample()

    def to_env_actions(self, a):
        return a.numpy()


def make_collector(env_id, mode, n_step=1, gamma=0.5, num_envs=2, capacity=64, prioritized=False):
    modes = gym.vector.AutoresetMode
    env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": modes.NEXT_STEP if mode == "next" else modes.SAME_STEP})
    spec = ReplaySpec(capacity, 0, 0, (), torch.int64, None, n_step, gamma, prioritized)
    return ReplayCollector(env, RandomBehaviour(), spec, train_freq=8, gradient_steps=1, batch_size=16,
                           learning_starts=0, seed=1, generator_seed=2, replay_seed=3)


def stored(replay, env):
    k = int(replay.size[env])
    return replay.obs[:k, env, 0].tolist(), replay.next_obs[:k, env, 0].tolist(), replay.ended[:k, env].tolist()


@pytest.mark.parametrize("mode", ["next", "same"])
def test_autoreset_modes_store_only_real_transitions_with_true_final_obs(mode):
    col = make_collector("test/Counter-v0", mode)
    batch = col.collect()
    assert batch.num_steps == 16 and batch.step == 16
    # Counter: obs t -> t+1, truncated after 3 steps. NEXT_STEP wastes one step per episode (the reset)
    expect_rows = 6 if mode == "next" else 8
    for env in range(2):
        obs, nxt, ended = stored(col.replay, env)
        assert len(obs) == expect_rows
        assert obs[:6] == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]
        assert nxt[:6] == [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]          # 3.0 = the true final obs, not a reset obs
        assert ended[:6] == [False, False, True, False, False, True]
        assert not col.replay.terminated[: len(obs), env].any()    # truncation is not termination
    assert batch.episode_returns == [3.0] * 4 and batch.episode_lengths == [3] * 4


def test_n_step_returns_stop_at_truncation_and_keep_the_bootstrap():
    col = make_collector("test/Counter-v0", "next", n_step=2, gamma=0.5)
    col.collect()
    mb = col.replay.sample(256)
    for o, g, nxt, d in zip(mb.obs[:, 0].tolist(), mb.rewards.tolist(), mb.next_obs[:, 0].tolist(),
                            mb.discounts.tolist()):
        expected = {0.0: (1.5, 2.0, 0.25), 1.0: (1.5, 3.0, 0.25), 2.0: (1.0, 3.0, 0.5)}[o]
        assert (g, nxt, d) == expected


def test_n_step_returns_cut_the_bootstrap_at_termination():
    col = make_collector("test/MaskedBandit-v0", "next", n_step=3, gamma=0.9)
    col.behaviour.n = 4
    col.collect()
    mb = col.replay.sample(64)
    payout = torch.tensor([0.0, 0.5, 1.0, 2.0])
    torch.testing.assert_close(mb.rewards, payout[mb.actions])
    assert (mb.discounts == 0).all()
    assert (mb.actions != 3).all() and not mb.next_mask[:, 3].any()


def test_n_step_window_is_limited_by_the_newest_row():
    spec = ReplaySpec(8, 1, 1, (), torch.int64, None, 3, 0.5)
    rb = ReplayBuffer(spec, 0)
    for t in range(2):  # two transitions of an unfinished episode
        rb.add(np.array([0]), torch.tensor([[float(t)]]), torch.tensor([0]), torch.tensor([1.0]),
               torch.tensor([[t + 1.0]]), torch.tensor([False]), torch.tensor([False]))
    mb = rb._gather(np.array([0, 1]), np.array([0, 0]), None)
    torch.testing.assert_close(mb.rewards, torch.tensor([1.5, 1.0]))
    torch.testing.assert_close(mb.discounts, torch.tensor([0.25, 0.5]))
    torch.testing.assert_close(mb.next_obs[:, 0], torch.tensor([2.0, 2.0]))


def test_ring_buffer_overwrites_oldest_per_env():
    rb = ReplayBuffer(ReplaySpec(6, 2, 1), 0)   # 3 rows per env copy
    for t in range(5):
        rb.add(np.array([0, 1]), torch.tensor([[t], [10.0 + t]]), torch.tensor([0, 0]), torch.zeros(2),
               torch.zeros(2, 1), torch.zeros(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool))
    assert len(rb) == 6 and sorted(rb.obs[:, 0, 0].tolist()) == [2.0, 3.0, 4.0]
    assert sorted(rb.sample(200).obs[:, 0].unique().tolist()) == [2.0, 3.0, 4.0, 12.0, 13.0, 14.0]


def test_sum_tree_find_and_proportional_sampling():
    tree = SumTree(5)
    tree.set(np.arange(5), np.array([1.0, 0.0, 3.0, 0.0, 4.0]))
    assert tree.total == 8.0
    assert tree.find(np.array([0.0, 0.99, 1.0, 3.99, 4.0, 7.99])).tolist() == [0, 0, 2, 2, 4, 4]
    rb = ReplayBuffer(ReplaySpec(4, 1, 1, prioritized=True, alpha=1.0, priority_eps=0.0), 0)
    for t in range(4):
        rb.add(np.array([0]), torch.tensor([[float(t)]]), torch.tensor([0]), torch.zeros(1), torch.zeros(1, 1),
               torch.zeros(1, dtype=torch.bool), torch.zeros(1, dtype=torch.bool))
    rb.update_priorities(torch.arange(4), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    mb = rb.sample(20000, beta=1.0)
    freq = torch.bincount(mb.obs[:, 0].long(), minlength=4).float() / 20000
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.015, rtol=0)
    # importance weights (N P(i))^-beta normalised by the max: 1/(4 p_i) / (1/(4*0.1))
    w_expected = 0.1 / torch.tensor([0.1, 0.2, 0.3, 0.4])
    torch.testing.assert_close(mb.weights, w_expected[mb.obs[:, 0].long()])


def test_state_dict_round_trip_continues_identically():
    col = make_collector("test/Counter-v0", "next", n_step=2, prioritized=True)
    col.collect()
    state = col.replay.state_dict()
    twin = ReplayBuffer(dataclasses.replace(col.replay.spec), 99)
    twin.load_state_dict(state)
    a, b = col.replay.sample(32), twin.sample(32)
    for f in ("obs", "actions", "rewards", "next_obs", "discounts", "weights", "indices"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    bad = ReplayBuffer(dataclasses.replace(col.replay.spec, capacity=128), 0)
    with pytest.raises(ValueError, match="rows per env copy"):
        bad.load_state_dict(state)
