"""The trainer: the only loop in policyopt (collect -> update -> log -> evaluate -> checkpoint).

Every algorithm runs through it via the small protocols of :mod:`policyopt.core.protocols`.
Schedules (evaluation, checkpoints, annealing) are derived from the step counter, so a resumed run
makes exactly the decisions the uninterrupted run would have made.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from policyopt.core.config import configclass
from policyopt.core.protocols import Algorithm, Collector, Evaluator
from policyopt.core.seeding import capture_global_rng, restore_global_rng
from policyopt.runtime import checkpoint as ckpt
from policyopt.runtime.metrics_log import MetricsLog, Progress


@configclass
class TrainerConfig:
    total_steps: Annotated[int, Field(gt=0)] = 100_000
    """Environment steps (or samples) to train for."""
    eval_every_steps: Annotated[int, Field(ge=0)] = 10_000
    """Evaluate each time the step counter crosses a multiple of this; 0 = only at the end."""
    eval_episodes: Annotated[int, Field(gt=0)] = 10
    """Episodes per evaluation (played in parallel, deterministic actions)."""
    checkpoint_every_steps: Annotated[int, Field(ge=0)] = 0
    """Checkpoint each time the step counter crosses a multiple of this; 0 = only at the end."""
    keep_checkpoints: Annotated[int, Field(ge=1)] = 3
    """How many recent checkpoints to keep."""
    torch_threads: Annotated[int, Field(ge=1)] = 1
    """torch intra-op threads; 1 is fastest for small networks and safe on a shared machine."""
    progress: Literal["auto", "bar", "lines", "none"] = "auto"
    """Progress display: a bar on a terminal, plain lines otherwise (auto), or none."""
    tensorboard: bool = True
    """Also write TensorBoard event files (when tensorboard is installed)."""
    stop_at_eval_return: float | None = None
    """Stop early once the evaluation mean return reaches this value; None = never."""


class Trainer:
    """The one training loop of every algorithm: collect -> update -> log -> evaluate -> checkpoint.

    ``Trainer(algorithm, collector, TrainerConfig(...), run_dir, evaluator=None).run()`` returns the last
    metrics record. It knows the pieces only through :mod:`policyopt.core.protocols`; everything it
    checkpoints is their ``state_dict()`` trees plus its own counters, so ``resume`` is bitwise exact."""

    def __init__(self, algorithm: Algorithm, collector: Collector, config: TrainerConfig, run_dir: str | Path,
                 evaluator: Evaluator | None = None):
        self.algorithm, self.collector, self.config = algorithm, collector, config
        self.evaluator, self.run_dir = evaluator, Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.step, self.updates, self.train_time_s = 0, 0, 0.0
        self.last_record: dict[str, Any] = {}

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"algorithm": self.algorithm.state_dict(), "collector": self.collector.state_dict(),
                "trainer": {"step": self.step, "updates": self.updates, "train_time_s": self.train_time_s},
                "rng": capture_global_rng()}

    def load_state_dict(self, state: dict) -> None:
        self.algorithm.load_state_dict(state["algorithm"])
        self.collector.load_state_dict(state["collector"])
        t = state["trainer"]
        self.step, self.updates, self.train_time_s = int(t["step"]), int(t["updates"]), float(t["train_time_s"])
        restore_global_rng(state["rng"])

    def save(self) -> Path:
        return ckpt.save_checkpoint(self.run_dir, self.step, self.state_dict(), keep_last=self.config.keep_checkpoints)

    def restore(self, path: str | Path | None = None) -> int:
        """Load the latest checkpoint of this run (or ``path``) and drop metrics logged after it."""
        tree, step = ckpt.load_checkpoint(path or self.run_dir)
        self.load_state_dict(tree)
        MetricsLog.truncate_after(self.run_dir / "metrics.jsonl", self.step)
        return step

    # -- the loop ------------------------------------------------------------------------------
    def run(self, until_step: int | None = None) -> dict[str, Any]:
        """Train until ``total_steps`` (or ``until_step``); always ends with a checkpoint.

        Ctrl-C stops after the current update and still writes the checkpoint.
        """
        cfg = self.config
        stop = cfg.total_steps if until_step is None else min(until_step, cfg.total_steps)
        log = MetricsLog(self.run_dir, cfg.tensorboard)
        progress = Progress(cfg.total_steps, self.step, cfg.progress)
        saved_at = -1
        try:
            while self.step < stop:
                record = self._iteration()
                prev = record.pop("_prev_step")
                if self._crossed(cfg.eval_every_steps, prev) or self.step >= cfg.total_steps:
                    record.update(self._evaluate())
                log.write(record)
                progress.update(self.step, record)
                self.last_record = record
                if self._crossed(cfg.checkpoint_every_steps, prev):
                    self.save()
                    saved_at = self.step
                target = cfg.stop_at_eval_return
                if target is not None and record.get("eval/return_mean", -float("inf")) >= target:
                    break
        except KeyboardInterrupt:
            print(f"\ninterrupted at step {self.step:,}: writing a checkpoint", flush=True)
        finally:
            progress.close()
            log.close()
        if saved_at != self.step:
            self.save()
        return self.last_record

    def _iteration(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        batch = self.collector.collect()
        t1 = time.perf_counter()
        metrics = self.algorithm.update(batch)
        t2 = time.perf_counter()
        prev = self.step
        self.step += int(batch.num_steps)
        self.updates += 1
        self.train_time_s += t2 - t0
        record: dict[str, Any] = {"step": self.step, "update": self.updates, "_prev_step": prev}
        record.update(metrics)
        returns = getattr(batch, "episode_returns", None)
        if returns:
            lengths = batch.episode_lengths
            record["reward/episode_return_mean"] = sum(returns) / len(returns)
            record["reward/episode_length_mean"] = sum(lengths) / len(lengths)
            record["reward/episodes"] = len(returns)
        record["time/collect_s"] = t1 - t0
        record["time/update_s"] = t2 - t1
        record["time/train_s"] = self.train_time_s
        record["time/steps_per_s"] = (self.step - prev) / max(t2 - t0, 1e-9)
        return record

    def _crossed(self, every: int, prev_step: int) -> bool:
        return every > 0 and self.step // every > prev_step // every

    def _evaluate(self) -> dict[str, float]:
        if self.evaluator is None:
            return {}
        t0 = time.perf_counter()
        out = dict(self.evaluator.evaluate())
        out["time/eval_s"] = time.perf_counter() - t0
        return out
