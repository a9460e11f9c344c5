"""Experiment orchestration above single runs: the same config over several seeds (``run_seeds``),
feeding :mod:``policyopt.eval.stats`` (IQM, bootstrap CIs, curves)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def run_seeds(config: str | Path | dict, seeds: Sequence[int], root: str | Path, overrides: Sequence[str] = (),
              tag: str = "run") -> list[Path]:
    """Train ``config`` once per seed (sequentially) into ``root/<tag>_s<seed>``; returns the run dirs.
    A run dir that already holds a finished run is reused (so an interrupted sweep can continue)."""
    from policyopt.app.run import train

    dirs = []
    for seed in seeds:
        run_dir = Path(root) / f"{tag}_s{seed}"
        if not (run_dir / "checkpoints").exists():
            train(config, [*overrides, f"seed={seed}", "trainer.progress=none"], run_dir=run_dir)
        dirs.append(run_dir)
    return dirs
