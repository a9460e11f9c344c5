"""policyopt DPO vs TRL ``DPOTrainer`` on the same model, pairs, batch size, beta, learning rate and steps.

Each side runs in its own subprocess (fair peak RSS), single-threaded torch, fp32 on the CPU:

- policyopt: ``DPO`` (loss ``dpo``) + ``PreferenceCollector`` through the shared
  ``Trainer``; reference log-probs cached once before training.
- TRL ``DPOTrainer`` with ``bf16=False``, ``use_cpu=True``, constant learning rate, no warm-up, AdamW
  with the same betas/eps and the same gradient clipping, twice: ``trl_defaults`` (TRL's other
  defaults: gradient checkpointing on, reference forward pass every step) and ``trl_tuned``
  (``gradient_checkpointing=False``, ``precompute_ref_log_probs=True``: its fastest CPU setting, the
  same reference caching as ours).

The policy is the built-in model (its untrained architecture when the shipped weights are absent); the
reference is the same model with seeded Gaussian noise on its weights, so that the step-0 loss is not
trivially log 2. The script asserts that both sides compute the same DPO loss (to 1e-5) on the same
first batch before any update, then reports pairs/s, s/step, peak RSS, final loss and reward accuracy
and the ratios, and writes ``benchmarks/results/dpo_vs_trl.json``.

    python benchmarks/dpo_vs_trl.py [--steps 40 --batch 16 --pairs 640]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDES = ("policyopt", "trl_defaults", "trl_tuned")
OUT = ROOT / "benchmarks" / "results" / "dpo_vs_trl.json"
SYNTHETIC = {"task": "addition", "task_params": {"max_digits": 3}, "alphabet": "abcdefgh", "min_len": 8,
             "max_len": 24, "seed": 0}


def prepare(workdir: Path, pairs: int, noise: float) -> None:
    """Save the policy and the (perturbed) reference models and the pairs as JSONL."""
    import torch

    from policyopt.core.config import build
    from policyopt.data.preference import save_pairs_jsonl
    from policyopt.lm.builtin import BUILTIN_DIR, build_untrained, load_builtin
    from policyopt.lm.synthetic_preference import SyntheticConfig, synthetic_pairs

    model, tok = load_builtin() if (BUILTIN_DIR / "config.json").is_file() else build_untrained(0)
    model.save_pretrained(workdir / "policy")
    tok.save_pretrained(workdir / "policy")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * torch.randn(p.shape, generator=gen))
    model.save_pretrained(workdir / "reference")
    tok.save_pretrained(workdir / "reference")
    records, _ = synthetic_pairs(build(SyntheticConfig, {**SYNTHETIC, "num_prompts": pairs}))
    save_pairs_jsonl(records, workdir / "pairs.jsonl")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def one_step_probe(model, loss_fn, args: argparse.Namespace) -> float:
    """Update parity check: one AdamW step (same hyper-parameters as training, clip 1.0) on the first
    batch from the untouched weights, then the loss on that batch again; the weights are restored."""
    import torch

    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    model.train()
    loss = loss_fn()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        after = float(loss_fn())
    model.load_state_dict(saved)
    return after


def run_policyopt(workdir: Path, args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from policyopt.algos.dpo import DPO, DPOConfig, cached_reference
    from policyopt.data.preference import PairTable, load_pairs_jsonl, pair_batch
    from policyopt.lm.builtin import load_builtin
    from policyopt.runtime.lm_collectors import PreferenceCollector
    from policyopt.runtime.trainer import Trainer, TrainerConfig

    t0 = time.perf_counter()
    model, tok = load_builtin(workdir / "policy")
    ref_model, _ = load_builtin(workdir / "reference")
    table = PairTable.from_records(load_pairs_jsonl(workdir / "pairs.jsonl"), tok)
    ref = cached_reference(ref_model, table, None, batch_size=args.batch)
    del ref_model
    algo = DPO(DPOConfig(beta=args.beta, learning_rate=args.lr, max_grad_norm=1.0), model)
    first = pair_batch(table, np.arange(args.batch), ref)
    with torch.no_grad():
        loss0, _ = algo.losses(first)
    loss1 = one_step_probe(model, lambda: algo.losses(first)[0].mean(), args)
    setup_s = time.perf_counter() - t0
    collector = PreferenceCollector(table, ref, args.batch, seed=0)
    cfg = TrainerConfig(total_steps=args.steps * args.batch, eval_every_steps=0, progress="none", tensorboard=False)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(algo, collector, cfg, run_dir)
        t1 = time.perf_counter()
        trainer.run()
        train_s = time.perf_counter() - t1
        rows = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    losses, accs = [r["loss/dpo"] for r in rows], [r["rewards/accuracy"] for r in rows]
    return {"loss_step0": float(loss0.mean()), "loss_after_probe_step": loss1, "train_s": train_s,
            "setup_s": setup_s, "losses": losses, "accuracies": accs}


def run_trl(workdir: Path, args: argparse.Namespace, tuned: bool) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    rows = [json.loads(line) for line in (workdir / "pairs.jsonl").read_text().splitlines()]
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(workdir / "policy", dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(workdir / "reference", dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(workdir / "policy")
    config = DPOConfig(output_dir=str(workdir / "trl_out"), beta=args.beta, learning_rate=args.lr,
                       per_device_train_batch_size=args.batch, max_steps=args.steps, bf16=False, use_cpu=True,
                       gradient_checkpointing=not tuned, precompute_ref_log_probs=tuned, lr_scheduler_type="constant",
                       warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, logging_steps=1, save_strategy="no",
                       report_to="none", dataloader_num_workers=0, seed=0, disable_tqdm=True, max_length=None)
    trainer = DPOTrainer(model=model, ref_model=ref, args=config, train_dataset=Dataset.from_list(rows),
                         processing_class=tok)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(args.batch)])
    with torch.no_grad():
        loss0 = trainer.compute_loss(trainer.model, batch)
    loss1 = one_step_probe(trainer.model, lambda: trainer.compute_loss(trainer.model, batch), args)
    trainer._metrics["train"].clear()
    setup_s = time.perf_counter() - t0
    logs: list[dict] = []

    class Keep(TrainerCallback):
        def on_log(self, _args, _state, _control, logs_=None, **kw):
            logs.append(dict(kw.get("logs") or logs_ or {}))

    trainer.add_callback(Keep())
    t1 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t1
    steps = [x for x in logs if "loss" in x]
    return {"loss_step0": float(loss0), "loss_after_probe_step": loss1, "train_s": train_s, "setup_s": setup_s,
            "losses": [float(x["loss"]) for x in steps],
            "accuracies": [float(x.get("rewards/accuracies", float("nan"))) for x in steps]}


def child(side: str, workdir: Path, args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = run_policyopt(workdir, args) if side == "policyopt" else run_trl(workdir, args, side == "trl_tuned")
    out["peak_rss_mb"] = peak_rss_mb()
    (workdir / f"{side}.json").write_text(json.dumps(out))


def summarise(side: dict, args: argparse.Namespace) -> dict:
    tail = max(1, min(5, len(side["losses"])))
    return {"pairs_per_s": args.steps * args.batch / side["train_s"], "s_per_step": side["train_s"] / args.steps,
            "setup_s": side["setup_s"], "peak_rss_mb": side["peak_rss_mb"], "loss_step0": side["loss_step0"],
            "loss_after_probe_step": side["loss_after_probe_step"],
            "final_loss": sum(side["losses"][-tail:]) / tail,
            "final_reward_accuracy": sum(side["accuracies"][-tail:]) / tail, "steps_logged": len(side["losses"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--pairs", type=int, default=640)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--noise", type=float, default=0.02, help="std of the reference's weight perturbation")
    p.add_argument("--repeats", type=int, default=2, help="interleaved rounds (shared machine: best round counts)")
    p.add_argument("--child", choices=SIDES, default=None)
    p.add_argument("--workdir", default=None)
    args = p.parse_args()
    if args.child:
        child(args.child, Path(args.workdir), args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(work, args.pairs, args.noise)
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT),
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        flags = [f"--steps={args.steps}", f"--batch={args.batch}", f"--pairs={args.pairs}", f"--beta={args.beta}",
                 f"--lr={args.lr}", f"--noise={args.noise}", f"--workdir={work}"]
        sides: dict[str, dict] = {}
        for _ in range(args.repeats):          # interleaved rounds; the fastest round of each side counts
            for side in SIDES:
                subprocess.run([sys.executable, __file__, f"--child={side}", *flags], env=env, check=True, cwd=ROOT)
                run = summarise(json.loads((work / f"{side}.json").read_text()), args)
                rates = sides.get(side, {}).get("pairs_per_s_rounds", []) + [run["pairs_per_s"]]
                if side not in sides or run["pairs_per_s"] > sides[side]["pairs_per_s"]:
                    sides[side] = run
                sides[side]["pairs_per_s_rounds"] = rates
    ours = sides["policyopt"]
    gaps = {k: abs(ours["loss_step0"] - v["loss_step0"]) for k, v in sides.items() if k != "policyopt"}
    result = {"config": vars(args) | {"synthetic": SYNTHETIC, "torch_threads": 1}, **sides,
              "ratios": {k: {"pairs_per_s": ours["pairs_per_s"] / sides[k]["pairs_per_s"],
                             "peak_rss": ours["peak_rss_mb"] / sides[k]["peak_rss_mb"]} for k in gaps},
              "step0_loss_abs_diff": gaps, "load_average": os.getloadavg()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    for name, side in sides.items():
        print(f"{name:10s} " + "  ".join(f"{k}={v:.4g}" for k, v in side.items() if not isinstance(v, list)))
    for k, r in result["ratios"].items():
        print(f"policyopt vs {k}: pairs/s ratio {r['pairs_per_s']:.2f}x, peak RSS ratio {r['peak_rss']:.2f}, "
              f"step-0 loss |diff| {gaps[k]:.2e}")
    for k in gaps:
        print(f"loss after one identical AdamW step on the first batch: policyopt {ours['loss_after_probe_step']:.6f}"
              f" vs {k} {sides[k]['loss_after_probe_step']:.6f}")
    for k, gap in gaps.items():
        assert gap < 1e-5, f"step-0 DPO losses differ: policyopt {ours['loss_step0']} vs {k} {sides[k]['loss_step0']}"


if __name__ == "__main__":
    main()
