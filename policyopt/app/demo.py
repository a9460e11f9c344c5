"""The built-in demo (``make demo``, ``policyopt demo``): a short GRPO run of the shipped model on its
held-out tasks, with before/after accuracy and a reward-curve PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any


# ------------------------------------------------------------------------------------- demo
def demo(run_dir: str | Path | None = None, config: str | Path | None = None,
         overrides: list[str] = ()) -> dict[str, float]:
    """GRPO on the built-in model: held-out accuracy before and after, and a reward-curve PNG.

    Runs ``configs/grpo_demo.yaml`` (about 2-3 minutes on 2 CPU cores); prints the held-out greedy
    accuracy and sampled reward before and after training and writes ``reward_curve.png`` into the
    run directory. Returns ``{"before": ..., "after": ...}`` (greedy held-out accuracy).
    ``overrides`` are ``dotted.key=value`` strings (e.g. ``model.path=/path/to/model``).
    """
    from policyopt.app.run import build_trainer, default_run_dir, parse_run_config, run_config_dict
    from policyopt.core.config import apply_overrides, dump_yaml, load_yaml
    from policyopt.runtime.metrics_log import MetricsLog

    root = Path(__file__).resolve().parents[2]
    cfg = parse_run_config(apply_overrides(load_yaml(config or root / "configs" / "grpo_demo.yaml"), list(overrides)))
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    trainer = build_trainer(cfg, run_dir)
    dump_yaml(run_config_dict(cfg), run_dir / "config.yaml")
    before = trainer.evaluator.evaluate()
    print(f"before: held-out greedy accuracy {before['eval/accuracy/all']:.3f} "
          f"({len(trainer.evaluator.examples)} prompts never trained on)", flush=True)
    after = trainer.run()
    print(f"after {trainer.step:,} sampled completions ({trainer.train_time_s:.0f}s): held-out greedy accuracy "
          f"{after['eval/accuracy/all']:.3f}")
    png = plot_reward_curve(run_dir, [{"step": 0, **before}] + MetricsLog.read(run_dir / "metrics.jsonl"))
    print(f"reward curve: {png}")
    return {"before": before["eval/accuracy/all"], "after": after["eval/accuracy/all"]}


def plot_reward_curve(run_dir: Path, records: list[dict[str, Any]] | None = None) -> Path:
    """Write ``reward_curve.png`` (training reward per step, held-out evaluations as points)."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    train = [r for r in records if "reward/mean" in r]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in train], [r["reward/mean"] for r in train], alpha=0.35, label="train reward (sampled)")
    window = max(1, len(train) // 10)
    smooth = [sum(r["reward/mean"] for r in train[max(0, i - window + 1): i + 1]) / min(window, i + 1)
              for i in range(len(train))]
    ax.plot([r["step"] for r in train], smooth, color="C0", label=f"train reward ({window}-update mean)")
    evals = [r for r in records if "eval/accuracy/all" in r]
    ax.plot([r["step"] for r in evals], [r["eval/accuracy/all"] for r in evals], "o-",
            label="held-out accuracy (greedy)")
    ax.set_xlabel("completions sampled")
    ax.set_ylabel("reward / accuracy")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = run_dir / "reward_curve.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
