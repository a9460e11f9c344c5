"""PPO, A2C and REINFORCE learn: real thresholds, small budgets, each asserted over several seeds.

One seed's run depends on the CPU's float rounding, so every test runs seeds in order and passes when
at least k of n reach the threshold (``tests/multiseed.at_least``). The measured pass rates in the
docstrings are from one AMD EPYC machine, 1 torch thread, torch 2.13.0.
"""

import numpy as np
import pytest

from policyopt.app.run import train
from tests.multiseed import at_least
from tests.runtime.toy_envs import register

register()
QUIET = {"progress": "none", "tensorboard": False}


def run(tmp_path, algo, env, algo_cfg, total, seed=0, **trainer):
    cfg = {"algo": algo, "seed": seed, "env": env, algo: algo_cfg,
           "trainer": {"total_steps": total, "eval_every_steps": 0, "eval_episodes": 10, **QUIET, **trainer}}
    return train(cfg, run_dir=tmp_path / f"{algo}-s{seed}")[1]


def test_ppo_solves_cartpole_quickly(tmp_path):
    """PPO solves CartPole: greedy eval return (10 episodes, every 4096 steps) >= 475 within 72k steps.
    Pass rule: seeds 0-4, at least 3 of 5 reach 475. Measured: seeds 0-29 all reached it (median 24k
    steps, slowest 61k). The former single-seed 40k budget missed on 4 of 30 seeds here (seed 0: 207)
    and on 3 of 10 on another EPYC. Random play scores ~22."""
    env = {"id": "CartPole-v1", "num_envs": 16, "vectorization": "vector_entry_point"}
    cfg = {"learning_rate": 2.5e-3, "num_steps": 64, "minibatch_size": 512}
    at_least(3, range(5), lambda seed: run(tmp_path, "ppo", env, cfg, 72_000, seed=seed, eval_every_steps=4096,
                                           stop_at_eval_return=475)["eval/return_mean"],
             lambda ret: ret >= 475, "PPO CartPole eval return")


@pytest.mark.parametrize("algo, cfg, total, target", [
    ("a2c", {"num_steps": 8, "learning_rate": 2e-3, "optimizer": "adam"}, 40_000, 150),
    ("reinforce", {"num_steps": 256, "learning_rate": 3e-3}, 60_000, 120),
])
def test_a2c_and_reinforce_improve_on_cartpole(tmp_path, algo, cfg, total, target):
    """A2C reaches greedy eval return 150 within 40k steps, REINFORCE 120 within 60k (eval every 4096
    steps, stop at the target); random play scores ~22, the untrained greedy policy ~10.
    Pass rule: seeds 0-4, at least 3 of 5. Measured: A2C 16 of 16 seeds (0-15, all by 16k steps);
    REINFORCE 15 of 16 (seed 4 peaks at 96). REINFORCE's former single-seed rule (150 after 60k) held
    on only 6 of 12 seeds here."""
    env = {"id": "CartPole-v1", "num_envs": 8, "vectorization": "vector_entry_point"}
    at_least(3, range(5), lambda seed: run(tmp_path, algo, env, cfg, total, seed=seed, eval_every_steps=4096,
                                           stop_at_eval_return=target)["eval/return_mean"],
             lambda ret: ret >= target, f"{algo} CartPole eval return")


def test_masked_actions_learn_the_best_valid_arm(tmp_path):
    """PPO learns the best valid arm (arm 2, return 1.0; the better arm 3 is masked and never played)
    in 4096 steps (random valid arms: 0.5). Pass rule: seeds 0-4, at least 3 of 5 score exactly 1.0.
    Measured: 12 of 12 seeds."""
    env = {"id": "test/MaskedBandit-v0", "num_envs": 16, "vectorization": "sync"}
    cfg = {"num_steps": 8, "minibatch_size": 64, "learning_rate": 3e-3}
    at_least(3, range(5), lambda seed: run(tmp_path, "ppo", env, cfg, 4096, seed=seed)["eval/return_mean"],
             lambda ret: ret == 1.0, "masked bandit eval return")


def test_gaussian_policy_on_box_actions(tmp_path):
    """The deterministic action (the Gaussian's mean) reaches the target: eval return > -0.05 after
    8192 steps (start: -1.25). Pass rule: seeds 0-4, at least 3 of 5. Measured: 12 of 12 seeds, the
    worst -0.0056."""
    env = {"id": "test/TargetBox-v0", "num_envs": 16, "vectorization": "sync"}
    cfg = {"num_steps": 8, "minibatch_size": 64, "learning_rate": 1e-2, "ent_coef": 0.0}
    at_least(3, range(5), lambda seed: run(tmp_path, "ppo", env, cfg, 8192, seed=seed)["eval/return_mean"],
             lambda ret: ret > -0.05, "box target eval return")


def test_multidiscrete_policy(tmp_path):
    """Every MultiDiscrete component picks its target: eval return 3.0 after 4096 steps (random: 1.0).
    Pass rule: seeds 0-4, at least 3 of 5. Measured: 12 of 12 seeds."""
    env = {"id": "test/TargetMulti-v0", "num_envs": 16, "vectorization": "sync"}
    cfg = {"num_steps": 8, "minibatch_size": 64, "learning_rate": 1e-2}
    at_least(3, range(5), lambda seed: run(tmp_path, "ppo", env, cfg, 4096, seed=seed)["eval/return_mean"],
             lambda ret: bool(np.isclose(ret, 3.0)), "multidiscrete eval return")
