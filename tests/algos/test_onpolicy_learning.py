"""PPO, A2C and REINFORCE learn: real thresholds on fixed seeds, small budgets."""

import numpy as np
import pytest

from policyopt.runtime.run import train
from tests.runtime.toy_envs import register

register()
QUIET = {"progress": "none", "tensorboard": False}


def run(tmp_path, algo, env, algo_cfg, total, **trainer):
    cfg = {"algo": algo, "seed": 0, "env": env, algo: algo_cfg,
           "trainer": {"total_steps": total, "eval_every_steps": 0, "eval_episodes": 10, **QUIET, **trainer}}
    return train(cfg, run_dir=tmp_path / algo)[1]


def test_ppo_solves_cartpole_quickly(tmp_path):
    env = {"id": "CartPole-v1", "num_envs": 16, "vectorization": "vector_entry_point"}
    rec = run(tmp_path, "ppo", env, {"learning_rate": 2.5e-3, "num_steps": 64, "minibatch_size": 512},
              40_000, eval_every_steps=4096, stop_at_eval_return=475)
    assert rec["eval/return_mean"] >= 475


@pytest.mark.parametrize("algo, cfg, total", [
    ("a2c", {"num_steps": 8, "learning_rate": 2e-3, "optimizer": "adam"}, 40_000),
    ("reinforce", {"num_steps": 256, "learning_rate": 3e-3}, 60_000),
])
def test_a2c_and_reinforce_improve_on_cartpole(tmp_path, algo, cfg, total):
    env = {"id": "CartPole-v1", "num_envs": 8, "vectorization": "vector_entry_point"}
    rec = run(tmp_path, algo, env, cfg, total)
    assert rec["eval/return_mean"] >= 150   # random play scores ~22


def test_masked_actions_learn_the_best_valid_arm(tmp_path):
    env = {"id": "test/MaskedBandit-v0", "num_envs": 16, "vectorization": "sync"}
    rec = run(tmp_path, "ppo", env, {"num_steps": 8, "minibatch_size": 64, "learning_rate": 3e-3}, 8192)
    assert rec["eval/return_mean"] == 1.0   # arm 2; the better arm 3 is masked and never played


def test_gaussian_policy_on_box_actions(tmp_path):
    env = {"id": "test/TargetBox-v0", "num_envs": 16, "vectorization": "sync"}
    rec = run(tmp_path, "ppo", env, {"num_steps": 8, "minibatch_size": 64, "learning_rate": 1e-2, "ent_coef": 0.0},
              16384)
    assert rec["eval/return_mean"] > -0.05   # deterministic action = mean ~ target (start: -1.25)


def test_multidiscrete_policy(tmp_path):
    env = {"id": "test/TargetMulti-v0", "num_envs": 16, "vectorization": "sync"}
    rec = run(tmp_path, "ppo", env, {"num_steps": 8, "minibatch_size": 64, "learning_rate": 1e-2}, 8192)
    assert np.isclose(rec["eval/return_mean"], 3.0)
