"""Shared helpers of the off-policy tests: exact-resume comparison through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from policyopt.app.run import train
from policyopt.runtime import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "policyopt.cli", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


def assert_tree_equal(a, b, path: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(map(str, a))} != {sorted(map(str, b))}"
        for k in a:
            if path == "/trainer" and k == "train_time_s":
                continue
            assert_tree_equal(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_tree_equal(x, y, f"{path}/{i}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{path}: tensors differ"
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), f"{path}: arrays differ"
    else:
        assert a == b or (a != a and b != b), f"{path}: {a!r} != {b!r}"


def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def assert_resume_exact(config: dict, tmp_path: Path, until_step: int) -> dict:
    """Train N in one go vs train k + ``policyopt resume`` in a NEW process to N; returns the final tree.
    (The first two runs are in this process to keep the test fast; the resume is the CLI.)"""
    full, split = tmp_path / "full", tmp_path / "split"
    train(config, run_dir=full)
    train(config, run_dir=split, until_step=until_step)
    part, step = ckpt.load_checkpoint(split)
    assert 0 < step < config["trainer"]["total_steps"]
    cli("resume", str(split))
    a, step_a = ckpt.load_checkpoint(full)
    b, step_b = ckpt.load_checkpoint(split)
    assert step_a == step_b == a["trainer"]["step"]
    assert_tree_equal(a, b)
    ma, mb = metrics(full), metrics(split)
    assert len(ma) == len(mb) and ma == mb
    return a
