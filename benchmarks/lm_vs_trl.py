"""policyopt GRPO vs TRL ``GRPOTrainer`` on the built-in model, side by side; plus ReMax vs PPO-with-critic.

    python benchmarks/lm_vs_trl.py                        # built-in model, defaults below
    python benchmarks/lm_vs_trl.py --steps 10 --model DIR  # any local model directory

Both GRPO sides get the same model (fp32), task, training prompts (the same pool, each side's own
seeded shuffle), group size, prompts per step, max completion length, learning rate (constant, AdamW
betas (0.9, 0.999), grad-norm clip 1.0), loss type (``grpo``: per-sequence mean, std-scaled group
advantages, clip 0.2, beta 0 so neither side loads a reference model), one on-policy step per
generation, number of steps and torch thread count. TRL runs with ``use_cpu=True, bf16=False`` and
``gradient_checkpointing=False`` (its fastest CPU setting; the defaults are slower). Each side runs in
its own subprocess so its peak RSS is its own. Reported per side: completions/s and seconds per step
of training (held-out evaluation excluded), peak RSS, and held-out greedy accuracy / sampled reward
after the same number of sampled completions, measured by the same function on the same prompts.

The second part runs policyopt ReMax and PPO-with-critic on the same setup (each in a subprocess)
and reports seconds per iteration, peak RSS and the bytes of model state each holds (weights +
optimizer moments + critic + reference), the quantity the ReMax paper's "half the memory" is about.

Writes ``benchmarks/results/lm_vs_trl.json`` and ``benchmarks/results/lm_vs_trl.png`` (reward curves).
The machine may be shared with other jobs: rerun for stable timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="builtin", help="'builtin' or a local model directory")
    p.add_argument("--task", default="addition", help="generated task family (policyopt.lm.tasks)")
    p.add_argument("--task-params", type=json.loads, default=None,
                   help='difficulty knobs as JSON, e.g. \'{"max_digits": 2}\' (default: the built-in model\'s)')
    p.add_argument("--train-prompts", type=int, default=2000)
    p.add_argument("--eval-prompts", type=int, default=200)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--prompts-per-step", type=int, default=8)
    p.add_argument("--group", type=int, default=8, help="completions per prompt")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--side", choices=["policyopt", "trl", "remax", "lm_ppo"], default=None,
                   help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--skip", nargs="*", default=[], help="sides to skip (policyopt, trl, remax, lm_ppo)")
    p.add_argument("--repeats", type=int, default=2,
                   help="run the sides this many times, alternating, and keep each side's fastest run "
                        "(the machine is shared: wall-clock noise is large; CPU seconds are reported too)")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------- shared
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def data_config(args: argparse.Namespace) -> dict:
    """The run config's ``data:`` section (the same prompts for every side)."""
    params = {args.task: args.task_params} if args.task_params else {}
    return {"tasks": {args.task: args.train_prompts}, "task_params": params, "eval_prompts": args.eval_prompts,
            "eval_samples": 4}


def held_out(args: argparse.Namespace, model, tokenizer) -> dict:
    """Held-out greedy accuracy and sampled reward (same function and prompts for every side)."""
    from policyopt.lm.rewards import default_task_reward
    from policyopt.lm.source import PromptDataConfig, TextEvaluator, prompt_pools

    _, examples = prompt_pools(PromptDataConfig(**data_config(args)))

    class _Policy:  # the evaluator needs .model/.tokenizer only
        pass

    pol = _Policy()
    pol.model, pol.tokenizer = model, tokenizer
    out = TextEvaluator(pol, examples, default_task_reward(0.1), max_new_tokens=args.max_new_tokens,
                        samples=4, seed=1234).evaluate()
    return {"accuracy": out["eval/accuracy/all"], "sampled_reward": out["eval/sampled_reward"]}


def state_mb(tensors) -> float:
    seen, total = set(), 0
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total / 2**20


# --------------------------------------------------------------------------------- policyopt
def run_policyopt(args: argparse.Namespace, algo: str) -> dict:
    import torch

    from policyopt.app.run import build_trainer, parse_run_config
    from policyopt.runtime.metrics_log import MetricsLog

    section = {"collect": {"prompts_per_step": args.prompts_per_step, "completions_per_prompt": args.group,
                           "max_new_tokens": args.max_new_tokens, "temperature": 1.0},
               "learning_rate": args.lr, "betas": [0.9, 0.999], "max_grad_norm": 1.0, "track_kl": False}
    if algo == "grpo":
        section.update({"aggregation": "sequence_mean", "scale_by_std": True, "clip_low": 0.2, "epochs": 1})
    per_step = args.prompts_per_step * args.group
    data = {"algo": algo, "seed": args.seed, algo: section, "model": {"path": args.model}, "data": data_config(args),
            "reward": {"kind": "task", "format_weight": 0.1},
            "trainer": {"total_steps": args.steps * per_step, "eval_every_steps": 0, "progress": "none",
                        "tensorboard": False, "torch_threads": args.threads}}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(parse_run_config(data), Path(tmp))
        trainer.evaluator = None
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.run()
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        records = MetricsLog.read(Path(tmp) / "metrics.jsonl")
    algo_obj = trainer.algorithm
    core = getattr(algo_obj, "core", algo_obj)
    tensors = list(core.policy.model.parameters())
    tensors += [t for s in core.optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    if core.policy.reference_model is not None:
        tensors += list(core.policy.reference_model.parameters())
    if hasattr(algo_obj, "critic_body"):
        tensors += list(algo_obj.critic_body.parameters()) + list(algo_obj.value_head.parameters())
        tensors += [t for s in algo_obj.critic_optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    policy = core.policy
    out = {"seconds": seconds, "cpu_seconds": cpu_seconds, "steps": len(records), "completions": trainer.step,
           "reward_curve": [r["reward/mean"] for r in records], "model_state_mb": state_mb(tensors),
           "peak_rss_train_mb": peak_rss_mb()}
    out["held_out"] = held_out(args, policy.model, policy.tokenizer)
    return out


# --------------------------------------------------------------------------------------- TRL
def run_trl(args: argparse.Namespace) -> dict:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from policyopt.lm.rewards import default_task_reward
    from policyopt.lm.source import PromptDataConfig, load_model, prompt_pools

    model, tok = load_model(args.model)
    train, _ = prompt_pools(PromptDataConfig(**data_config(args)))
    # TRL tokenises prompts with add_special_tokens=False: put the BOS our model expects into the text
    rows = [{"prompt": tok.bos_token + ex.prompt, "meta": json.dumps(dict(ex.metadata))} for ex in train]
    reward = default_task_reward(0.1)

    def task_reward(prompts, completions, meta, **_):
        values = reward(prompts, completions, [json.loads(m) for m in meta])
        return [float("nan") if v is None else float(v) for v in values]

    with tempfile.TemporaryDirectory() as tmp:
        cfg = GRPOConfig(output_dir=tmp, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
                         per_device_train_batch_size=args.prompts_per_step * args.group,
                         gradient_accumulation_steps=1, steps_per_generation=1, num_generations=args.group,
                         max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
                         learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                         adam_beta1=0.9, adam_beta2=0.999, max_grad_norm=1.0, max_steps=args.steps,
                         loss_type="grpo", beta=0.0, epsilon=0.2, num_iterations=1, scale_rewards="group",
                         logging_steps=1, report_to="none", save_strategy="no", seed=args.seed,
                         dataloader_num_workers=0, disable_dropout=True)
        trainer = GRPOTrainer(model=model, reward_funcs=task_reward, args=cfg,
                              train_dataset=Dataset.from_list(rows), processing_class=tok)
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train()
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    logs = [h for h in trainer.state.log_history if "reward" in h]
    tensors = list(model.parameters())
    tensors += [t for s in trainer.optimizer.state.values() for t in s.values() if hasattr(t, "numel")]
    out = {"seconds": seconds, "cpu_seconds": cpu_seconds, "steps": trainer.state.global_step,
           "completions": trainer.state.global_step * args.prompts_per_step * args.group,
           "reward_curve": [h["reward"] for h in logs], "model_state_mb": state_mb(tensors),
           "peak_rss_train_mb": peak_rss_mb()}
    out["held_out"] = held_out(args, model, tok)
    return out


def run_side(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    result = run_trl(args) if args.side == "trl" else run_policyopt(args, "grpo" if args.side == "policyopt"
                                                                    else args.side)
    result["completions_per_s"] = result["completions"] / result["seconds"]
    result["completions_per_cpu_s"] = result["completions"] / result["cpu_seconds"]
    result["s_per_step"] = result["seconds"] / max(1, result["steps"])
    result["cpu_s_per_step"] = result["cpu_seconds"] / max(1, result["steps"])
    result["peak_rss_mb"] = peak_rss_mb()
    return result


# ------------------------------------------------------------------------------ orchestration
def spawn(side: str, argv: list[str]) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--side", side, "--out", out]
    print(f"[{side}] running ...", flush=True)
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"side {side} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(Path(out).read_text())
    os.unlink(out)
    print(f"[{side}] {result['completions_per_s']:.1f} completions/s ({result['completions_per_cpu_s']:.1f} per "
          f"CPU-s), {result['s_per_step']:.2f} s/step, "
          f"peak RSS {result['peak_rss_mb']:.0f} MiB, held-out accuracy {result['held_out']['accuracy']:.3f}",
          flush=True)
    return result


def drop_option(argv: list[str], name: str, n_values: int) -> list[str]:
    """``argv`` without ``name`` and the ``n_values`` arguments that follow it."""
    if name not in argv:
        return argv
    i = argv.index(name)
    return argv[:i] + argv[i + 1 + n_values:]


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, res in results.items():
        curve = res.get("reward_curve") or []
        ax.plot(range(1, len(curve) + 1), curve, label=name)
    ax.set_xlabel("update (same completions per update on every side)")
    ax.set_ylabel("mean training reward")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.side is not None:
        Path(args.out).write_text(json.dumps(run_side(args)))
        return {}
    forwarded = drop_option(drop_option(argv, "--skip", len(args.skip)), "--repeats", 1)
    sides = [side for side in ("policyopt", "trl", "remax", "lm_ppo") if side not in args.skip]
    results: dict = {}
    for _ in range(args.repeats):
        for side in sides:
            run = spawn(side, forwarded)
            if side not in results or run["seconds"] < results[side]["seconds"]:
                results[side] = run
    ratios = {}
    if "policyopt" in results and "trl" in results:
        ours, trl = results["policyopt"], results["trl"]
        ratios = {"completions_per_s": ours["completions_per_s"] / trl["completions_per_s"],
                  "completions_per_cpu_s": ours["completions_per_cpu_s"] / trl["completions_per_cpu_s"],
                  "s_per_step_trl_over_ours": trl["s_per_step"] / ours["s_per_step"],
                  "peak_rss_ours_over_trl": ours["peak_rss_mb"] / trl["peak_rss_mb"],
                  "accuracy_ours_minus_trl": ours["held_out"]["accuracy"] - trl["held_out"]["accuracy"]}
        print(f"GRPO: policyopt/TRL completions/s = {ratios['completions_per_s']:.2f}x "
              f"(per CPU-second {ratios['completions_per_cpu_s']:.2f}x), "
              f"peak RSS ratio {ratios['peak_rss_ours_over_trl']:.2f}, "
              f"held-out accuracy {ours['held_out']['accuracy']:.3f} vs {trl['held_out']['accuracy']:.3f}")
    if "remax" in results and "lm_ppo" in results:
        rm, pp = results["remax"], results["lm_ppo"]
        ratios["remax_vs_ppo"] = {"s_per_iter_ppo_over_remax": pp["s_per_step"] / rm["s_per_step"],
                                  "cpu_s_per_iter_ppo_over_remax": pp["cpu_s_per_step"] / rm["cpu_s_per_step"],
                                  "model_state_ppo_over_remax": pp["model_state_mb"] / rm["model_state_mb"],
                                  "peak_rss_ppo_over_remax": pp["peak_rss_mb"] / rm["peak_rss_mb"]}
        print(f"ReMax vs PPO+critic: s/iteration {rm['s_per_step']:.2f} vs {pp['s_per_step']:.2f}, model state "
              f"{rm['model_state_mb']:.1f} vs {pp['model_state_mb']:.1f} MiB, peak RSS {rm['peak_rss_mb']:.0f} vs "
              f"{pp['peak_rss_mb']:.0f} MiB")
    import torch
    import trl

    report = {"config": {k: v for k, v in vars(args).items() if k not in ("side", "out")},
              "results": results, "ratios": ratios,
              "versions": {"torch": torch.__version__, "trl": trl.__version__, "python": platform.python_version()},
              "machine": {"cpu_count": os.cpu_count(), "note": "shared 2-core VM; other jobs were running"}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lm_vs_trl.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(results, RESULTS / "lm_vs_trl.png")
    print(f"wrote {RESULTS / 'lm_vs_trl.json'} and lm_vs_trl.png")
    return report


if __name__ == "__main__":
    main()
