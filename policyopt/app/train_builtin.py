"""Train the built-in model from scratch and write it to ``policyopt/lm/builtin_model/``.

    python -m policyopt.app.train_builtin                      # ~10 min on 2 CPU cores
    python -m policyopt.app.train_builtin --out /tmp/mymodel   # leave the shipped model alone

What it does (deterministic for a given seed and thread count):

1. ``torch.set_num_threads(threads)``; a fresh Llama-style model (``builtin.ARCHITECTURE``) with the
   character tokenizer, initialised after ``torch.manual_seed(seed)``.
2. A training mix of the task families (``TRAIN_COUNTS``, difficulty ``builtin.TASK_PARAMS``)
   drawn from the *train* split only (prompts of the eval split are excluded by hash).
3. Supervised fine-tuning (:class:`policyopt.algos.sft.SFT`, loss on completion tokens only) for
   ``--updates`` updates through the shared :class:`policyopt.runtime.trainer.Trainer`.
4. Saves the model (bfloat16 safetensors) + tokenizer, reloads them the way users will
   (``load_builtin``), measures greedy held-out accuracy per task on ``EVAL_PER_TASK`` eval-split
   prompts per task (seed ``builtin.EVAL_SEED``), prints it and writes ``accuracy.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from policyopt.algos.sft import SFT, SFTConfig
from policyopt.data.text import SFTDataConfig
from policyopt.lm.builtin import BUILTIN_DIR, EVAL_SEED, MAX_NEW_TOKENS, TASK_PARAMS, build_untrained, load_builtin
from policyopt.lm.evaluate import TaskEvaluator, evaluate_examples
from policyopt.lm.tasks import generate, generate_mixture
from policyopt.runtime.lm_collectors import SFTCollector
from policyopt.runtime.trainer import Trainer, TrainerConfig

TRAIN_COUNTS = {"addition": 80_000, "multiplication": 30_000, "sorting": 30_000, "equation": 30_000,
                "countdown": 30_000}
"""Training examples per task (sampled with repetition from the train split)."""

EVAL_PER_TASK = 200
"""Held-out prompts per task for the reported accuracy."""

CHECK_PER_TASK = 40
"""Size of the per-task prefix whose accuracy the test suite re-measures (``accuracy.json: check``)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m policyopt.app.train_builtin", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=BUILTIN_DIR, help="output directory (default: the shipped model)")
    p.add_argument("--updates", type=int, default=1000, help="SFT updates")
    p.add_argument("--batch-size", type=int, default=128, help="prompt/completion pairs per update")
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (results depend on it)")
    p.add_argument("--eval-every", type=int, default=250, help="updates between progress evaluations (0: none)")
    p.add_argument("--run-dir", type=Path, default=None, help="trainer run dir (default: a temporary dir)")
    return p.parse_args(argv)


def eval_examples(per_task: int) -> dict[str, list[Any]]:
    """The held-out examples: the first ``per_task`` eval-split prompts of each task (seed EVAL_SEED)."""
    return {t: generate(t, per_task, "eval", EVAL_SEED, **TASK_PARAMS[t]) for t in TASK_PARAMS}


def train(args: argparse.Namespace, run_dir: Path) -> tuple[Any, Any]:
    torch.set_num_threads(args.threads)
    model, tokenizer = build_untrained(args.seed)
    data = generate_mixture(TRAIN_COUNTS, "train", args.seed, TASK_PARAMS, unique=False)
    collector = SFTCollector(data, tokenizer, SFTDataConfig(batch_size=args.batch_size, seed=args.seed,
                                                            max_length=128))
    # constant learning rate after warm-up: the model after N updates does not depend on --updates
    algo = SFT(model, SFTConfig(learning_rate=args.learning_rate, warmup_updates=100, total_updates=0,
                                weight_decay=0.0, max_grad_norm=1.0))
    progress = [ex for exs in eval_examples(25).values() for ex in exs]
    evaluator = TaskEvaluator(model, tokenizer, progress, max_new_tokens=MAX_NEW_TOKENS)
    cfg = TrainerConfig(total_steps=args.updates * args.batch_size, torch_threads=args.threads,
                        eval_every_steps=args.eval_every * args.batch_size, progress="lines",
                        tensorboard=False, checkpoint_every_steps=0, keep_checkpoints=1)
    Trainer(algo, collector, cfg, run_dir, evaluator=evaluator if args.eval_every else None).run()
    return model, tokenizer


def save(model: Any, tokenizer: Any, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    model.to(torch.float32)
    tokenizer.save_pretrained(out)
    for stray in ("generation_config.json", "chat_template.jinja", "special_tokens_map.json"):
        (out / stray).unlink(missing_ok=True)


def measure(out: Path, args: argparse.Namespace, train_s: float) -> dict[str, Any]:
    """Greedy held-out accuracy of the model *as saved* (reloaded from ``out``)."""
    model, tokenizer = load_builtin(out)
    per_task = eval_examples(EVAL_PER_TASK)
    examples = [ex for exs in per_task.values() for ex in exs]
    result = evaluate_examples(model, tokenizer, examples, max_new_tokens=MAX_NEW_TOKENS)
    check, offset = {}, 0
    for task, exs in per_task.items():
        check[task] = float(result.correct[offset:offset + CHECK_PER_TASK].mean())
        offset += len(exs)
    return {
        "accuracy": {k: round(v, 4) for k, v in result.accuracy.items()},
        "counts": result.counts,
        "check": {"per_task": CHECK_PER_TASK, "accuracy": check},
        "decoding": {"greedy": True, "max_new_tokens": MAX_NEW_TOKENS},
        "eval_seed": EVAL_SEED,
        "task_params": TASK_PARAMS,
        "train": {"updates": args.updates, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                  "seed": args.seed, "threads": args.threads, "counts": TRAIN_COUNTS,
                  "wall_s": round(train_s, 1), "torch": torch.__version__, "machine": platform.machine()},
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "weights_dtype": "bfloat16",
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="policyopt-builtin-") as tmp:
        model, tokenizer = train(args, args.run_dir or Path(tmp))
    train_s = time.perf_counter() - t0
    save(model, tokenizer, args.out)
    report = measure(args.out, args, train_s)
    (args.out / "accuracy.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"trained in {train_s:.0f}s; held-out greedy accuracy ({EVAL_PER_TASK} prompts per task):")
    for task, acc in report["accuracy"].items():
        print(f"  {task:15s} {acc:.3f}")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
