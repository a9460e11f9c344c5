"""Stages: the short trainings a builder runs before its run starts (the SFT warm-up of the preference
algorithms, MPO's reward model), each through the one :class:`~policyopt.runtime.trainer.Trainer`.

A stage trains into ``run_dir/stages/<name>/``: its own ``metrics.jsonl`` (one record per update, like
any run), ``checkpoints/`` (one, at the end) and ``stage.json`` (what it was made from). Its result is
part of the run, so it must not change on resume: when the builder runs again on the same run dir
(``resume``, ``evaluate``, ``train`` restarted after a crash), the finished stage is restored from its
checkpoint instead of being trained again (the same weights, bitwise, and the same global RNG state
after it). A stage interrupted with Ctrl-C checkpoints, stops the run, and continues exactly from there
next time. A run dir whose stage was made from a different ``stage.json`` is refused.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from policyopt.core.config import ConfigError
from policyopt.core.protocols import Algorithm, Collector
from policyopt.runtime import checkpoint as ckpt
from policyopt.runtime.trainer import Trainer, TrainerConfig

STAGES_DIR = "stages"


def stage_dir(run_dir: str | Path, name: str) -> Path:
    """Where stage ``name`` of the run in ``run_dir`` lives."""
    return Path(run_dir) / STAGES_DIR / name


def run_stage(name: str, algorithm: Algorithm, collector: Collector, updates: int, steps_per_update: int,
              run_dir: str | Path | None, made_from: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``algorithm`` on ``collector`` for exactly ``updates`` updates as stage ``name`` of a run.

    ``steps_per_update``: what one batch of ``collector`` counts in ``num_steps`` (examples, pairs), so
    the stage's ``total_steps`` is ``updates * steps_per_update``. ``made_from``: a JSON-able description
    of everything the stage's result depends on besides that (config sections, seeds); it is kept in
    ``stage.json`` and must match when the stage is restored. ``run_dir=None`` trains in a temporary
    directory, deleted afterwards (nothing to resume). Returns the stage's last metrics record (``{}``
    when the finished stage was restored)."""
    if run_dir is None:
        with tempfile.TemporaryDirectory(prefix=f"policyopt-stage-{name}-") as tmp:
            return run_stage(name, algorithm, collector, updates, steps_per_update, tmp, made_from)
    where = stage_dir(run_dir, name)
    _claim(where, {"stage": name, "updates": updates, "steps_per_update": steps_per_update, **(made_from or {})})
    total = updates * steps_per_update
    trainer = Trainer(algorithm, collector, TrainerConfig(total_steps=total, eval_every_steps=0, keep_checkpoints=1,
                                                          progress="none", tensorboard=False), where)
    if ckpt.latest_checkpoint(where) is not None:
        trainer.restore()
    if trainer.step < total:
        trainer.run()
        if trainer.step < total:  # Ctrl-C inside the stage: the Trainer checkpointed; stop the run too
            raise KeyboardInterrupt(f"stage {name} interrupted at step {trainer.step:,} of {total:,}")
    if trainer.updates != updates:
        raise RuntimeError(f"stage {name}: {trainer.updates} updates for {updates} requested "
                           f"(batches of {steps_per_update} steps expected)")
    return trainer.last_record


def _claim(where: Path, spec: dict[str, Any]) -> None:
    """Write ``stage.json``, or check that the one already there describes the same stage."""
    spec = json.loads(json.dumps(spec, sort_keys=True))
    path = where / "stage.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored != spec:
            keys = sorted(k for k in set(stored) | set(spec) if stored.get(k) != spec.get(k))
            raise ConfigError(f"{path}: this run's stage {spec['stage']!r} was made with different settings "
                              f"({', '.join(keys)}); use a new run dir (or delete {where} to train it again)")
        return
    where.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
