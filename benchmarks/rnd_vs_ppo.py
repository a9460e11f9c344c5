"""PPO + RND vs plain PPO on the sparse-reward path-planning task, several seeds, one process.

    OMP_NUM_THREADS=1 python benchmarks/rnd_vs_ppo.py [--seeds 0 1 2 3 4] [--steps 1200000]

Both sides run configs/ppo_rnd_pathplanning.yaml, PPO with ``ppo.rnd=null`` (so the only difference is
RND), one torch thread, the same seeds, the same budget. The score is the success rate of the last
evaluation (32 episodes on evaluation seeds; the return is 1 at the goal and 0 otherwise). Reported: IQM
with 95% stratified-bootstrap CIs (policyopt.eval.stats, i.e. scipy), the probability of improvement,
how many seeds ever reach the goal, learning curves with CI bands (PNG) and the JSON in
benchmarks/results/rnd_vs_ppo.json. The claim checked (Burda et al., 2018): RND reaches the goal where
PPO does not.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from seed_compare import compare, run_pair, write

from policyopt.eval import stats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--steps", type=int, default=1_200_000)
    p.add_argument("--set", action="append", default=[], help="dotted.key=value for both sides (repeat)")
    p.add_argument("--name", default="rnd_vs_ppo", help="results name (runs/bench/<name>, benchmarks/results/<name>.*)")
    args = p.parse_args()
    torch.set_num_threads(1)
    # the same file for both: PPO is configs/ppo_rnd_pathplanning.yaml with the RND section removed
    configs = {"ppo": ("configs/ppo_rnd_pathplanning.yaml", ["ppo.rnd=null"]),
               "ppo+rnd": ("configs/ppo_rnd_pathplanning.yaml", [])}
    overrides = [f"trainer.total_steps={args.steps}", "trainer.eval_every_steps=100000", "trainer.tensorboard=false",
                 *args.set]
    runs, seconds = run_pair(args.name, configs, args.seeds, overrides)
    curves = {a: [stats.load_curve(d) for d in dirs] for a, dirs in runs.items()}
    ever = {a: int(sum(np.max(v) > 0 for _, v in cs)) for a, cs in curves.items()}
    out = compare(args.name, runs, seconds, 0.5, {"configs": configs, "total_steps": args.steps, "overrides": args.set,
                                                  "seeds_that_ever_reached_the_goal": ever})
    agg = {a: out["aggregates"][a]["iqm"] for a in runs}
    poi = out["probability_of_improvement"]["P(ppo+rnd > ppo)"]
    # reproduced: more seeds reach the goal with RND, and P(RND > PPO) is above 1/2 with 95% confidence
    reproduced = ever["ppo+rnd"] > ever["ppo"] and poi["ci_low"] > 0.5
    out["claim"] = "RND reaches the goal where PPO does not (Burda et al., 2018)"
    out["claim_test"] = "more seeds ever reach the goal with RND and the 95% CI of P(RND > PPO) excludes 1/2"
    out["claim_reproduced"] = bool(reproduced)
    write(args.name, out)
    for a in runs:
        e = agg[a]
        print(f"{a:8s} final success IQM {e['value']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}]  "
              f"seeds reaching the goal: {ever[a]}/{len(args.seeds)}  ({seconds[a]:.0f} s)")
    print(f"P(ppo+rnd > ppo) = {poi['value']:.2f} [{poi['ci_low']:.2f}, {poi['ci_high']:.2f}]")
    print(f"claim reproduced: {reproduced}  -> benchmarks/results/{args.name}.json/.png")


if __name__ == "__main__":
    main()
