"""Reward models under label noise: does the preference-strength treatment of "Secrets of RLHF Part II"
(Wang et al., 2024) help?

Synthetic pairs with a known truth (hidden per-character utility, ``policyopt.data.preference``);
training labels clean or 30% flipped; held-out pairs (eval-split prompts, other seed) always judged by
the truth. Four arms per seed, each a small Llama-body reward model trained with the same budget:

- ``clean``: Bradley-Terry on clean labels;
- ``noisy``: Bradley-Terry on 30%-flipped labels;
- ``noisy+strength``: a K=4 bootstrap ensemble trained on the noisy labels votes an out-of-bag
  preference strength per pair; a fresh model is trained with the treatments (flip pairs with mean
  strength < 0, label-smooth pairs with |strength| < ``soften``, adaptive margin ``0.5 * strength``);
- ``clean+strength``: the same treatment on clean labels (does it hurt when there is no noise?).

Reports held-out pair accuracy (mean and per seed), calibration (ECE) and, for the treatment, the
fraction of truly flipped pairs it un-flipped; writes ``benchmarks/results/rm_noise.json``.

    python benchmarks/rm_noise.py [--seeds 3 --pairs 2000 --epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from policyopt.algos.reward_model import RewardModel, RewardModelConfig, RewardModelTrainer
from policyopt.core.config import build
from policyopt.data.preference import PairTable
from policyopt.eval.preference import calibration, pair_accuracy
from policyopt.lm.synthetic_preference import SyntheticConfig, synthetic_pairs
from policyopt.runtime.lm_collectors import PreferenceCollector

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "rm_noise.json"
DATA = {"task": "addition", "task_params": {"max_digits": 3}, "alphabet": "abcdefgh", "min_len": 2, "max_len": 6}


def body(seed: int):
    from transformers import LlamaConfig, LlamaModel

    from policyopt.lm.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    return LlamaModel(cfg), tok


def train_rm(table: PairTable, k: int, seed: int, args: argparse.Namespace, strength: np.ndarray | None = None):
    members = [RewardModel(body(seed * 100 + i)[0], "last", seed=seed * 100 + i) for i in range(k)]
    cfg = build(RewardModelConfig, {"ensemble_size": k, "learning_rate": args.lr, "seed": seed})
    trainer = RewardModelTrainer(cfg, members, len(table))
    treatment = {}
    if strength is not None:
        treatment = trainer.apply_strength(strength, flip_below=0.0, soften_below=args.soften, smoothing=0.2,
                                           margin_scale=0.5)
    collector = PreferenceCollector(table, None, args.batch, seed=seed)
    for _ in range(args.epochs * len(table) // args.batch):
        trainer.update(collector.collect())
    return trainer, treatment


def held_out(trainer: RewardModelTrainer, table: PairTable) -> dict[str, float]:
    rc, rr = trainer.table_rewards(table)
    return {"accuracy": pair_accuracy(rc[0], rr[0]), **calibration(rc[0], rr[0], np.ones(rc.shape[1]))}


def one_seed(seed: int, args: argparse.Namespace, tok) -> dict:
    base = {**DATA, "num_prompts": args.pairs, "seed": seed}
    clean, _ = synthetic_pairs(build(SyntheticConfig, base))
    noisy, _ = synthetic_pairs(build(SyntheticConfig, {**base, "flip_rate": args.flip}))
    test, _ = synthetic_pairs(build(SyntheticConfig, {**base, "num_prompts": args.test_pairs, "split": "eval",
                                                       "seed": seed + 1000}))
    tables = {"clean": PairTable.from_records(clean, tok), "noisy": PairTable.from_records(noisy, tok)}
    test_table = PairTable.from_records(test, tok)
    out = {}
    for name, table in tables.items():
        t0 = time.perf_counter()
        plain, _ = train_rm(table, 1, seed, args)
        out[name] = held_out(plain, test_table)
        ensemble, _ = train_rm(table, args.ensemble, seed + 50, args)
        mu, _ = ensemble.strength(table, out_of_bag=True)
        treated, info = train_rm(table, 1, seed, args, strength=mu)
        flipped = noisy.flipped if name == "noisy" else np.zeros(len(table), dtype=bool)
        info["unflipped_true_noise"] = float(treated.flip.numpy()[flipped].mean()) if flipped.any() else 0.0
        info["flipped_clean_pairs"] = float(treated.flip.numpy()[~flipped].mean())
        out[f"{name}+strength"] = {**held_out(treated, test_table), **info}
        out[f"{name}_seconds"] = time.perf_counter() - t0
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--pairs", type=int, default=2000)
    p.add_argument("--test-pairs", type=int, default=500)
    p.add_argument("--flip", type=float, default=0.3)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--ensemble", type=int, default=4)
    p.add_argument("--soften", type=float, default=0.5, help="|strength| below which labels are smoothed")
    args = p.parse_args()
    torch.set_num_threads(1)
    _, tok = body(0)
    runs = [one_seed(s, args, tok) for s in range(args.seeds)]
    arms = ["clean", "noisy", "noisy+strength", "clean+strength"]
    summary = {arm: {"accuracy_mean": float(np.mean([r[arm]["accuracy"] for r in runs])),
                     "accuracy_per_seed": [r[arm]["accuracy"] for r in runs],
                     "ece_mean": float(np.mean([r[arm]["ece"] for r in runs]))} for arm in arms}
    gain = summary["noisy+strength"]["accuracy_mean"] - summary["noisy"]["accuracy_mean"]
    wins = sum(r["noisy+strength"]["accuracy"] > r["noisy"]["accuracy"] for r in runs)
    verdict = (f"treatment {'helps' if gain > 0 and wins == len(runs) else 'does not clearly help'} under "
               f"{args.flip:.0%} noise: {gain:+.3f} held-out accuracy on average, better in {wins}/{len(runs)} seeds")
    result = {"config": vars(args) | {"data": DATA}, "summary": summary, "runs": runs, "verdict": verdict,
              "load_average": os.getloadavg()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    for arm in arms:
        s = summary[arm]
        print(f"{arm:16s} held-out pair accuracy {s['accuracy_mean']:.3f} "
              f"(seeds {', '.join(f'{a:.3f}' for a in s['accuracy_per_seed'])}), ECE {s['ece_mean']:.3f}")
    print(verdict)


if __name__ == "__main__":
    main()
