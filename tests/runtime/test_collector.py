"""The rollout collector under both Gymnasium 1.x autoreset modes: truncation bootstraps from the
true final observation, no transition crosses an episode boundary, reset steps are masked."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from policyopt.algos.onpolicy import estimate, flatten
from policyopt.runtime.collectors import RolloutCollector
from tests.runtime.toy_envs import register

register()


class ValuePolicy:
    """V(s) = 10 * s, always action 0: makes every stored quantity predictable."""

    def act(self, obs, mask, generator, deterministic=False):
        n = obs.shape[0]
        return torch.zeros(n, dtype=torch.long), torch.zeros(n), self.value(obs)

    def value(self, obs):
        return 10.0 * obs[:, 0]

    def to_env_actions(self, a):
        return a.numpy()


def collect(mode):
    env = gym.make_vec("test/Counter-v0", num_envs=2, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": mode})
    col = RolloutCollector(env, ValuePolicy(), num_steps=8, seed=0, generator_seed=0)
    return col.collect()


def test_next_step_mode_masks_reset_steps_and_bootstraps_from_final_obs():
    b = collect(gym.vector.AutoresetMode.NEXT_STEP)
    col0 = lambda x: x[:, 0].tolist()  # noqa: E731
    assert col0(b.obs[..., 0]) == [0, 1, 2, 3, 0, 1, 2, 3]
    assert col0(b.valid) == [True, True, True, False, True, True, True, False]
    assert col0(b.episode_end) == [False, False, True, False, False, False, True, False]
    assert col0(b.terminated) == [False] * 8
    assert col0(b.next_values)[2] == 30.0          # V(true final obs = 3), not V(reset obs)
    assert col0(b.rewards) == [1, 1, 1, 0, 1, 1, 1, 0]


def test_same_step_mode_bootstraps_from_info_final_obs():
    b = collect(gym.vector.AutoresetMode.SAME_STEP)
    col0 = lambda x: x[:, 0].tolist()  # noqa: E731
    assert col0(b.obs[..., 0]) == [0, 1, 2, 0, 1, 2, 0, 1]
    assert all(col0(b.valid))
    assert col0(b.episode_end) == [False, False, True, False, False, True, False, False]
    assert col0(b.next_values)[2] == 30.0 and col0(b.next_values)[5] == 30.0
    assert col0(b.next_values)[7] == 20.0          # end of rollout: V(current obs = 2)


def test_both_modes_give_the_same_advantages_for_the_same_transitions():
    out = []
    for mode in (gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.SAME_STEP):
        b = collect(mode)
        adv, ret = estimate(b, 0.9, 0.8)
        flat = flatten(b, adv, ret)
        first_episode = flat.obs[:, 0] < 3
        out.append((flat.obs[:, 0][:3 * 2:2], flat.advantages[:3 * 2:2]))
        assert first_episode.all()
    assert torch.equal(out[0][0], out[1][0])
    assert torch.allclose(out[0][1], out[1][1])
    # hand value for the first step of an episode truncated after 3 steps with V(s) = 10 s:
    # deltas: 1 + .9*10 - 0 = 10, 1 + .9*20 - 10 = 9, 1 + .9*30 - 20 = 8
    expected = 10 + 0.72 * (9 + 0.72 * 8)
    assert float(out[0][1][0]) == pytest.approx(expected, rel=1e-6)


def test_episode_returns_are_raw_and_complete():
    b = collect(gym.vector.AutoresetMode.NEXT_STEP)
    assert b.episode_returns == [3.0] * 4 and b.episode_lengths == [3] * 4
    assert b.num_steps == 16


def test_masked_actions_are_never_sampled():
    from policyopt.nets.actor_critic import ActionSpec, ActorCritic

    env = gym.make_vec("test/MaskedBandit-v0", num_envs=16, vectorization_mode="sync")
    net = ActorCritic(2, ActionSpec.from_space(env.single_action_space))
    with torch.no_grad():
        net.pi_head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 50.0]))  # the policy loves the masked arm
    col = RolloutCollector(env, net, num_steps=20, seed=0, generator_seed=0)
    b = col.collect()  # MaskedBanditEnv raises if a masked arm is played
    assert b.action_mask is not None and not b.action_mask[..., 3].any()
    assert int(b.actions.max()) <= 2
    assert np.isfinite(b.logp.numpy()).all()
