"""Shared by benchmarks/rnd_vs_ppo.py and benchmarks/pdppo_vs_ppo.py: train configs on several seeds
in one process and write the statistics (policyopt.eval.stats: IQM, stratified-bootstrap CIs via scipy),
the learning-curve PNG with CI bands and the JSON into benchmarks/results/."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from policyopt.app import report
from policyopt.app.experiments import run_seeds
from policyopt.eval import stats

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def run_pair(name: str, configs: dict[str, tuple[str, list[str]]], seeds: list[int],
             overrides: list[str]) -> tuple[dict, dict]:
    """Train every ``label: (config, its own overrides)`` on every seed into runs/bench/<name>/ (finished
    runs there are reused); returns (run dirs, seconds)."""
    root = ROOT / "runs" / "bench" / name
    runs, seconds = {}, {}
    for label, (config, own) in configs.items():
        start = time.perf_counter()
        runs[label] = run_seeds(ROOT / config, seeds, root, [*overrides, *own], tag=label)
        seconds[label] = time.perf_counter() - start
        print(f"{label}: {len(seeds)} seeds in {seconds[label]:.0f} s", flush=True)
    return runs, seconds


def compare(name: str, runs: dict, seconds: dict, threshold: float | None, extra: dict) -> dict:
    """Summary statistics (IQM + CIs, P(improvement), time to threshold), the curve PNG and the JSON."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = report.summarize(runs, threshold)
    report.plot_curves(runs, RESULTS / f"{name}.png", threshold=threshold)
    train_s = {a: float(sum(json.loads((d / "metrics.jsonl").read_text().splitlines()[-1]).get("time/train_s", 0.0)
                            for d in dirs)) for a, dirs in runs.items()}
    out = {"benchmark": name, "machine": f"{platform.machine()} CPU, 2 cores shared with other engineers' jobs "
           "(wall-clock times are inflated and vary)", "torch_threads": torch.get_num_threads(),
           "script_wall_clock_s": seconds, "train_wall_clock_s_all_seeds": train_s, **extra, **summary}
    write(name, out)
    return out


def curve_table(runs: dict) -> dict:
    """Per algorithm: evaluation steps with the IQM and 95% CI across seeds at each (learning speed), and
    the area under the curve (mean evaluation score over the run) with IQM + CI across seeds."""
    out = {}
    for algo, dirs in runs.items():
        steps, values = stats.align_curves([stats.load_curve(d) for d in dirs])
        mid, low, high = stats.curve_bands(values, n_resamples=1000)
        auc = stats.stratified_bootstrap(np.nanmean(values, axis=1))
        out[algo] = {"steps": steps.tolist(), "iqm": mid.tolist(), "ci_low": low.tolist(), "ci_high": high.tolist(),
                     "auc_iqm": auc.as_dict()}
    return out


def write(name: str, out: dict) -> None:
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2))
