"""Multi-seed report: DQN with RL-Zoo's CartPole settings vs double DQN with 3-step returns.

Trains ``configs/dqn_cartpole.yaml`` for 30k steps on test seeds 100-104 (disjoint from the seeds
used while choosing settings) with and without ``double_q`` + ``replay.n_step=3``, then writes a
Markdown report with IQM and 95% stratified-bootstrap CIs, learning curves with CI bands,
performance profiles and time-to-475 (policyopt.eval). Finished runs under ``--root`` are reused.

    python benchmarks/dqn_variants_report.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

from policyopt.app.experiments import run_seeds

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    from policyopt.app import report

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104])
    p.add_argument("--steps", type=int, default=30_000)
    p.add_argument("--root", default=str(ROOT / "runs" / "dqn_variants_report"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dqn_cartpole_report"))
    args = p.parse_args()
    config = ROOT / "configs" / "dqn_cartpole.yaml"
    ov = [f"trainer.total_steps={args.steps}", "trainer.tensorboard=false"]
    runs = {"dqn (RL-Zoo)": run_seeds(config, args.seeds, args.root, ov, tag="dqn"),
            "double + 3-step": run_seeds(config, args.seeds, args.root,
                                               ov + ["dqn.double_q=true", "dqn.replay.n_step=3"], tag="double_n3")}
    name = f"DQN variants on CartPole-v1 ({args.steps:,} steps, seeds {args.seeds[0]}-{args.seeds[-1]})"
    path = report.write_report(name, runs, args.out, threshold=475,
                               command="python benchmarks/dqn_variants_report.py")
    print(path)


if __name__ == "__main__":
    main()
