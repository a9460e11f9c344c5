"""Exact resume and same-seed reproducibility, end to end through the CLI entry points."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from policyopt.app.run import train
from policyopt.runtime.checkpoint import load_checkpoint
from policyopt.runtime.metrics_log import MetricsLog

ROOT = Path(__file__).resolve().parents[2]

BASE = {
    "algo": "ppo", "seed": 3,
    "env": {"id": "CartPole-v1", "num_envs": 4, "normalize_obs": True, "normalize_reward": True},
    "ppo": {"num_steps": 16, "minibatch_size": 32, "update_epochs": 2, "learning_rate": 1e-3,
            "anneal_clip": True, "clip_vloss": True, "ent_coef": 0.01},
    "trainer": {"total_steps": 512, "eval_every_steps": 128, "eval_episodes": 3, "progress": "none",
                "tensorboard": False},
}


def config(vectorization: str) -> dict:
    return {**BASE, "env": {**BASE["env"], "vectorization": vectorization}}


def untimed(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]


def assert_trees_equal(a, b, path="") -> None:
    assert type(a) is type(b), path
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_trees_equal(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_trees_equal(x, y, f"{path}/{i}")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), path
    elif hasattr(a, "shape"):
        assert a.dtype == b.dtype and (a == b).all(), path
    elif isinstance(a, float) and a != a:
        assert b != b, path
    elif not path.endswith("train_time_s"):
        assert a == b, path


@pytest.mark.parametrize("vectorization", ["vector_entry_point", "sync"])
def test_resume_in_a_new_process_is_bitwise_exact(tmp_path, vectorization):
    full, _ = train(config(vectorization), run_dir=tmp_path / "full")
    part, _ = train(config(vectorization), run_dir=tmp_path / "part", until_step=192)   # 3 of 8 updates
    assert load_checkpoint(part)[1] == 192
    proc = subprocess.run([sys.executable, "-m", "policyopt.cli", "resume", str(part)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    tree_full, step_full = load_checkpoint(full)
    tree_part, step_part = load_checkpoint(part)
    assert step_full == step_part == 512
    # parameters, optimizer state, counters, env state, normalisers, every RNG
    assert_trees_equal(tree_full, tree_part)
    log_full = untimed(MetricsLog.read(full / "metrics.jsonl"))
    log_part = untimed(MetricsLog.read(part / "metrics.jsonl"))
    assert log_full == log_part and len(log_full) == 8
    assert any("eval/return_mean" in r for r in log_full[3:])


def test_same_seed_same_run_and_other_seed_differs(tmp_path):
    runs = []
    for name, seed in [("a", 3), ("b", 3), ("c", 4)]:
        run_dir, _ = train({**config("vector_entry_point"), "seed": seed}, run_dir=tmp_path / name)
        runs.append(untimed(MetricsLog.read(run_dir / "metrics.jsonl")))
    keys = ["loss/policy", "loss/value", "stats/approx_kl", "reward/episode_return_mean", "eval/return_mean"]
    series = [[[r.get(k) for r in run] for k in keys] for run in runs]
    assert series[0] == series[1]
    assert series[0] != series[2]


def test_resume_refuses_changed_geometry_unless_forced(tmp_path):
    from policyopt.app.run import resume
    from policyopt.core.config import ConfigError

    run_dir, _ = train(config("vector_entry_point"), run_dir=tmp_path / "r", until_step=128)
    with pytest.raises(ConfigError, match="ppo.num_steps: 16 -> 32"):
        resume(run_dir, ["ppo.num_steps=32"])
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        train(config("vector_entry_point"), run_dir=run_dir)
    run_dir, record = resume(run_dir, ["trainer.total_steps=256"])   # schedules may be extended
    assert record["step"] == 256


def test_cli_reports_a_corrupt_checkpoint_clearly(tmp_path):
    run_dir, _ = train(config("vector_entry_point"), run_dir=tmp_path / "r", until_step=64)
    tensors = next((run_dir / "checkpoints").glob("step_*/tensors.safetensors"))
    data = bytearray(tensors.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tensors.write_bytes(bytes(data))
    proc = subprocess.run([sys.executable, "-m", "policyopt.cli", "resume", str(run_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "policyopt: error:" in proc.stderr and "tensors.safetensors" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_init_from_copies_weights_only(tmp_path):
    src, _ = train(config("vector_entry_point"), run_dir=tmp_path / "src", until_step=128)
    dst, _ = train(config("vector_entry_point"), run_dir=tmp_path / "dst", until_step=64, init_from=src)
    a = load_checkpoint(src)[0]["algorithm"]["learner"]
    b = load_checkpoint(dst)[0]["algorithm"]["learner"]
    assert b["updates"] == 1  # a new run: its own counters and schedules
    assert json.dumps(sorted(a["net"])) == json.dumps(sorted(b["net"]))
