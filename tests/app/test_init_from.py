"""``--init-from`` for every algorithm with weights: a new run starts from another run's learned weights
(its own counters, optimiser and RNG streams), a language-model run also takes them as its reference,
and a source of the wrong kind is refused naming what is missing, leaving no half-made run."""

from __future__ import annotations

import pytest
import torch

from policyopt.app.run import train
from policyopt.core.config import ConfigError
from policyopt.runtime.checkpoint import load_checkpoint
from policyopt.runtime.metrics_log import MetricsLog

TRAINER = {"eval_every_steps": 0, "progress": "none", "tensorboard": False}
DQN = {"algo": "dqn", "seed": 0, "env": {"id": "CartPole-v1", "num_envs": 2},
       "dqn": {"learning_starts": 32, "batch_size": 16, "train_freq": 4, "replay": {"buffer_size": 500}},
       "trainer": {"total_steps": 128, **TRAINER}}
PPO = {"algo": "ppo", "seed": 0, "env": {"id": "CartPole-v1", "num_envs": 2},
       "ppo": {"num_steps": 16, "minibatch_size": 32}, "trainer": {"total_steps": 64, **TRAINER}}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_dqn_starts_from_another_runs_q_networks_with_fresh_counters(tmp_path):
    src, _ = train(DQN, run_dir=tmp_path / "src")
    dst, _ = train({**DQN, "seed": 1}, run_dir=tmp_path / "dst", until_step=0, init_from=src)
    a, b = load_checkpoint(src)[0]["algorithm"], load_checkpoint(dst)[0]["algorithm"]
    assert same(a["q"], b["q"]) and same(a["q_target"], b["q_target"])
    assert int(b["updates"]) == 0 < int(a["updates"])


def test_a_checkpoint_of_another_algorithm_is_refused_and_leaves_no_run(tmp_path):
    src, _ = train(DQN, run_dir=tmp_path / "src")
    with pytest.raises(ConfigError, match=r"--init-from: .* has no weights at 'learner.net'"):
        train(PPO, run_dir=tmp_path / "dst", init_from=src)
    assert not (tmp_path / "dst" / "config.yaml").exists() and not (tmp_path / "dst" / "checkpoints").exists()


def test_lm_run_starts_from_another_lm_run_and_uses_it_as_reference(tmp_path):
    from tests.algos.lm_helpers import cached_tiny_model, run_config

    base = run_config("grpo", cached_tiny_model(), {"learning_rate": 5e-3}, steps=2, prompts=4, group=4)
    src, _ = train(base, run_dir=tmp_path / "src")
    src_policy = load_checkpoint(src)[0]["algorithm"]["policy"]
    tuned = run_config("grpo", cached_tiny_model(), {"learning_rate": 5e-3, "kl_coef": 0.1}, steps=1,
                       prompts=4, group=4)
    dst, _ = train(tuned, run_dir=tmp_path / "dst", until_step=0, init_from=src)
    assert same(load_checkpoint(dst)[0]["algorithm"]["policy"], src_policy)   # the start is src's policy
    from policyopt.core.config import load_yaml

    assert load_yaml(dst / "config.yaml")["model"]["init_from"] == str(src)   # recorded for resume
    # the reference is that start too: the first update's KL to it is zero (one on-policy step)
    again, _ = train(tuned, run_dir=tmp_path / "again", init_from=src)
    first = MetricsLog.read(again / "metrics.jsonl")[0]
    assert abs(first["stats/kl_ref"]) < 1e-6


def test_lm_run_refuses_a_classic_run_as_its_start(tmp_path):
    from tests.algos.lm_helpers import cached_tiny_model, run_config

    src, _ = train(PPO, run_dir=tmp_path / "src")
    with pytest.raises(ConfigError, match=r"model.init_from: cannot start from .* no language-model weights"):
        train(run_config("grpo", cached_tiny_model(), steps=1, prompts=2, group=2), run_dir=tmp_path / "dst",
              init_from=src)
    assert not (tmp_path / "dst" / "config.yaml").exists()
