"""PDPPO (Felizardo et al., 2024): the dual-critic advantage by hand, the collector's post-decision
observations under both autoreset modes, clear errors, a learning post-decision critic, exact resume."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import policyopt.envs  # noqa: F401  (registers policyopt/...)
from policyopt.algos.pdppo import PDPPOConfig, PostDecisionCritic
from policyopt.app.run import resume, train
from policyopt.core.config import ConfigError
from policyopt.data.rollout import Rollout
from policyopt.runtime.checkpoint import load_checkpoint
from policyopt.runtime.collectors import RolloutCollector
from policyopt.runtime.metrics_log import MetricsLog
from tests.runtime.test_resume import assert_trees_equal, untimed

QUIET = {"progress": "none", "tensorboard": False}


def config(total: int = 624, env_id: str = "policyopt/LotSizing-v0", seed: int = 2, **pdppo) -> dict:
    return {"algo": "pdppo", "seed": seed,
            "env": {"id": env_id, "num_envs": 4, "vectorization": "vector_entry_point", "normalize_reward": True,
                    "kwargs": {"horizon": 13} if "LotSizing" in env_id else {}},
            "pdppo": {"num_steps": 26, "minibatch_size": 52, "update_epochs": 2, "learning_rate": 1e-3,
                      "clip_vloss": True, **pdppo},
            "trainer": {"total_steps": total, "eval_every_steps": 208, "eval_episodes": 2, **QUIET}}


def constant_critic(value: float, advantage: str) -> PostDecisionCritic:
    critic = PostDecisionCritic(PDPPOConfig(advantage=advantage), post_dim=2, total_updates=1, seed=0)
    with torch.no_grad():
        critic.head.weight.zero_()
        critic.head.bias.fill_(value)
    return critic


@pytest.mark.parametrize("advantage, expected", [("max", [1.5, -0.5, 3.0]), ("mean", [1.25, -0.75, 2.5])])
def test_dual_critic_advantage_by_hand(advantage, expected):
    # PPO's A = R - V(s) = [1, -1, 3] with R = [2, 0, 2.5]; V^x = 0.5 -> R - V^x = [1.5, -0.5, 2.0]
    adv, ret = torch.tensor([[1.0], [-1.0], [3.0]]), torch.tensor([[2.0], [0.0], [2.5]])
    z, b = torch.zeros(3, 1), torch.zeros(3, 1, dtype=torch.bool)
    batch = Rollout(torch.zeros(3, 1, 2), z, z, ret - adv, z, z, b, b, ~b, None, 3, extra_obs=torch.randn(3, 1, 2))
    out = constant_critic(0.5, advantage).prepare(batch, adv, ret)
    assert out[:, 0].tolist() == pytest.approx(expected)


class OrderPolicy:
    """Always orders a fixed fraction of max_order: the post-decision inventory is predictable."""

    def act(self, obs, mask, generator, deterministic=False):
        n = obs.shape[0]
        return torch.full((n, 3), 0.25), torch.zeros(n), torch.zeros(n)

    def value(self, obs):
        return torch.zeros(obs.shape[0])

    def to_env_actions(self, a):
        return a.numpy()


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_collector_stores_the_post_decision_observation_of_each_step(mode):
    env = gym.make_vec("policyopt/LotSizing-v0", num_envs=3, vectorization_mode="vector_entry_point",
                       horizon=4, autoreset_mode=mode)
    b = RolloutCollector(env, OrderPolicy(), num_steps=12, seed=0, generator_seed=0,
                         extra_obs_key="post_decision_obs").collect()
    assert b.extra_obs.shape == (12, 3, 5)
    v = b.valid
    inv, post = b.obs[..., :3][v] * 60, b.extra_obs[..., :3][v] * 60      # max_inventory = 60
    assert torch.allclose(post, torch.clamp(inv + 5, max=60), atol=1e-4)  # I^x = min(I + q, max), q = 5
    assert torch.equal(b.extra_obs[..., 3][v], b.obs[..., 3][v])          # same period t / horizon
    ends = b.episode_end & v
    assert ends.any() and torch.allclose(b.extra_obs[..., 3][ends], torch.tensor(0.75))   # not the reset's t=0


def test_pdppo_refuses_an_environment_without_a_post_decision_state(tmp_path):
    with pytest.raises(ConfigError, match="pdppo.post_decision_key: 'CartPole-v1' puts no 'post_decision_obs'"):
        train(config(env_id="CartPole-v1"), run_dir=tmp_path / "cp")
    with pytest.raises(ConfigError, match="pdppo.advantage"):
        train(config(advantage="min"), run_dir=tmp_path / "bad")


def test_post_decision_critic_learns_and_resume_is_bitwise_exact(tmp_path):
    full = train(config(1456), run_dir=tmp_path / "full")[0]
    part = train(config(1456), run_dir=tmp_path / "part", until_step=520)[0]
    resume(part)
    tree_full, step_full = load_checkpoint(full)
    tree_part, step_part = load_checkpoint(part)
    assert step_full == step_part == 1456
    assert set(tree_full["algorithm"]) == {"learner", "post_critic"}
    assert_trees_equal(tree_full, tree_part)
    log_full, log_part = (untimed(MetricsLog.read(d / "metrics.jsonl")) for d in (full, part))
    assert log_full == log_part
    loss = [r["pdppo/post_value_loss"] for r in log_full]
    ev = [r["pdppo/explained_variance_post"] for r in log_full]
    assert np.mean(loss[-3:]) < 0.5 * np.mean(loss[:3])
    assert np.mean(ev[-3:]) > np.mean(ev[:3]) + 0.2
    assert 0.0 < np.mean([r["pdppo/post_chosen_frac"] for r in log_full]) < 1.0
