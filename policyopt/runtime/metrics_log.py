"""Where metrics go: JSONL in the run dir (always), TensorBoard event files (when the package is
installed), and a live progress display (a tqdm bar on a terminal, plain lines otherwise).

Metric names are fixed across algorithms: ``loss/policy``, ``loss/value``, ``stats/approx_kl``,
``stats/clip_frac``, ``stats/entropy``, ``reward/episode_return_mean``, ``eval/return_mean``, ...
Wall-clock quantities live under ``time/`` (the only keys that differ between identical runs).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any


class MetricsLog:
    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self._file = self.path.open("a", buffering=1)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(str(Path(run_dir) / "tb"))
            except ImportError:
                self._tb = None

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        if self._tb is not None:
            step = int(record.get("step", 0))
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    @staticmethod
    def truncate_after(path: Path, step: int) -> None:
        """Drop records logged after ``step`` (used on resume: they will be produced again)."""
        if not path.exists():
            return
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(path)

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


def headline(record: dict[str, Any]) -> str:
    """What the progress display shows of a record: the episode return for classic RL, the batch's mean
    reward (and the held-out accuracy, or greedy reward without one) for LM runs; empty when the record has neither."""
    parts = []
    ret = record.get("eval/return_mean", record.get("reward/episode_return_mean"))
    if ret is not None:
        parts.append(f"return {ret:.4g}")
    if record.get("reward/mean") is not None:
        parts.append(f"reward {record['reward/mean']:.4g}")
    if record.get("eval/accuracy/all") is not None:
        parts.append(f"eval acc {record['eval/accuracy/all']:.3f}")
    elif record.get("eval/reward") is not None:
        parts.append(f"eval reward {record['eval/reward']:.4g}")
    return " | ".join(parts)


class Progress:
    """A tqdm bar on a terminal; otherwise one plain line every ``interval_s`` seconds."""

    def __init__(self, total: int, start: int, mode: str = "auto", interval_s: float = 10.0):
        self.total, self.mode, self.interval_s = total, mode, interval_s
        if mode == "auto":
            self.mode = "bar" if sys.stderr.isatty() else "lines"
        self._bar = None
        if self.mode == "bar":
            from tqdm import tqdm
            self._bar = tqdm(total=total, initial=start, unit="step", unit_scale=True, dynamic_ncols=True)
        self._last_print = time.perf_counter()
        self._t0, self._s0 = time.perf_counter(), start

    def update(self, step: int, record: dict[str, Any]) -> None:
        head = headline(record)
        if self._bar is not None:
            self._bar.n = step
            self._bar.set_postfix_str(head, refresh=False)
            self._bar.refresh()
        elif self.mode == "lines" and (time.perf_counter() - self._last_print >= self.interval_s or step >= self.total):
            self._last_print = time.perf_counter()
            rate = (step - self._s0) / max(self._last_print - self._t0, 1e-9)
            eta = (self.total - step) / rate if rate > 0 else float("inf")
            print(f"step {step:,}/{self.total:,} ({100 * step / self.total:.0f}%) | {rate:,.0f} steps/s "
                  f"| ETA {eta:,.0f}s" + (f" | {head}" if head else ""), flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
