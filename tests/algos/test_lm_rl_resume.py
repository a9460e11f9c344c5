"""Exact resume of GRPO at a generation-block boundary, across processes.

Run A trains N updates in one go. Run B trains k updates (``until_step``), then a *new process*
(``python -m policyopt.cli resume``) trains the remaining N - k. Parameters, optimizer state,
collector state (prompt position, sampler RNG) and every metric except ``time/*`` and ``mem/*`` must
be bitwise equal. The run exercises the stateful options: dynamic sampling (refill rounds),
several epochs x minibatches (shuffle RNG), a KL penalty against the frozen reference and a mid-run
evaluation.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from policyopt.app.run import train
from policyopt.core.config import dump_yaml
from policyopt.runtime import checkpoint as ckpt
from policyopt.runtime.metrics_log import MetricsLog
from tests.algos.lm_helpers import cached_tiny_model, run_config

ROOT = Path(__file__).resolve().parents[2]
PER_STEP = 4 * 4


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _flatten(v, f"{prefix}/{k}")
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            yield from _flatten(v, f"{prefix}/{i}")
    else:
        yield prefix, tree


def _assert_trees_equal(a, b, skip=()):
    fa, fb = dict(_flatten(a)), dict(_flatten(b))
    assert fa.keys() == fb.keys()
    for key, va in fa.items():
        if any(s in key for s in skip):
            continue
        vb = fb[key]
        if isinstance(va, torch.Tensor):
            assert va.dtype == vb.dtype and torch.equal(va, vb), key
        elif isinstance(va, np.ndarray):
            assert np.array_equal(va, vb), key
        else:
            assert va == vb, key


def _strip(record):
    return {k: v for k, v in record.items() if not k.startswith(("time/", "mem/"))}


def test_grpo_resume_is_bitwise_exact_across_processes(tmp_path):
    model = cached_tiny_model()
    section = {"learning_rate": 3e-4, "kl_coef": 0.02, "epochs": 2, "minibatches": 2,
               "collect": {"dynamic_sampling": True, "max_refill_rounds": 2}}
    data = run_config("grpo", model, section, steps=8, prompts=4, group=4)
    data["trainer"].update({"eval_every_steps": 2 * PER_STEP, "checkpoint_every_steps": 0})
    dump_yaml(data, tmp_path / "config.yaml")

    full, _ = train(data, run_dir=tmp_path / "full")
    split, _ = train(data, run_dir=tmp_path / "split", until_step=2 * PER_STEP)
    first_part = ckpt.load_checkpoint(split)[1]
    assert first_part >= 2 * PER_STEP  # stopped at the first generation-block boundary past k
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "policyopt.cli", "resume", str(split)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    tree_a, step_a = ckpt.load_checkpoint(full)
    tree_b, step_b = ckpt.load_checkpoint(split)
    assert step_a == step_b > first_part
    _assert_trees_equal(tree_a["algorithm"], tree_b["algorithm"])
    _assert_trees_equal(tree_a["collector"], tree_b["collector"])
    _assert_trees_equal(tree_a["trainer"], tree_b["trainer"], skip=("train_time_s",))
    rec_a = [_strip(r) for r in MetricsLog.read(full / "metrics.jsonl")]
    rec_b = [_strip(r) for r in MetricsLog.read(split / "metrics.jsonl")]
    assert len(rec_a) >= 3 and rec_a == rec_b
    assert any("eval/accuracy/all" in r for r in rec_a)
    assert any(r["stats/kept_groups"] > 0 for r in rec_a)
