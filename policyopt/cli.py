"""The ``policyopt`` command: train, resume, eval, list, demo.

    policyopt train configs/ppo_cartpole.yaml ppo.learning_rate=1e-3 trainer.total_steps=50000
    policyopt resume runs/ppo_CartPole-v1_s0_...        # exact continuation
    policyopt eval runs/ppo_CartPole-v1_s0_... --episodes 20
    policyopt list
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="policyopt", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="start a run from a YAML config")
    t.add_argument("config", help="run config (YAML); see `policyopt list` for ready ones")
    t.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. ppo.learning_rate=3e-4")
    t.add_argument("--run-dir", default=None, help="where to write the run (default: runs/<algo>_<env>_s<seed>_<time>)")
    t.add_argument("--until-step", type=int, default=None, help="stop (with a checkpoint) at this step")
    t.add_argument("--init-from", default=None, help="start from the policy weights of a run/checkpoint")
    r = sub.add_parser("resume", help="continue a run exactly from its latest checkpoint")
    r.add_argument("run_dir")
    r.add_argument("overrides", nargs="*", help="dotted.key=value overrides (e.g. trainer.total_steps=200000)")
    r.add_argument("--force", action="store_true", help="allow changing the batch geometry")
    r.add_argument("--until-step", type=int, default=None)
    e = sub.add_parser("eval", help="evaluate the latest checkpoint of a run")
    e.add_argument("run_dir")
    e.add_argument("--episodes", type=int, default=None)
    e.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    sub.add_parser("list", help="algorithms, environments and ready configs")
    d = sub.add_parser("demo", help="PPO on CartPole-v1, then GRPO on the built-in language model (needs the lm extra)")
    d.add_argument("--classic-only", action="store_true", help="skip the language-model demo")
    return p


def _list() -> None:
    import gymnasium as gym

    import policyopt.envs  # noqa: F401
    from policyopt.app.registry import REGISTRY

    print("algorithms:")
    for name, spec in sorted(REGISTRY.items()):
        print(f"  {name:12s} {spec.summary}")
    print("policyopt environments (any other Gymnasium id works too):")
    for env_id in sorted(k for k in gym.registry if k.startswith("policyopt/")):
        print(f"  {env_id}")
    print(f"ready configs ({CONFIG_DIR}):")
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        print(f"  {path.name}")


def _demo(classic_only: bool = False) -> None:
    import importlib.util

    from policyopt.app.run import train

    config = CONFIG_DIR / "ppo_cartpole.yaml"
    print(f"policyopt demo 1/2: PPO on CartPole-v1 ({config})", flush=True)
    run_dir, record = train(config, ["trainer.progress=lines"])
    print(f"final evaluation: mean return {record.get('eval/return_mean', float('nan')):.1f} "
          f"over {record.get('step', 0):,} steps in {record.get('time/train_s', 0):.1f}s of training")
    print(f"results: {run_dir.resolve()}  (config.yaml, metrics.jsonl, tb/, checkpoints/)", flush=True)
    if classic_only:
        return
    if importlib.util.find_spec("transformers") is None:
        print("demo 2/2 skipped: install the lm extra (pip install -e '.[lm,plot]') for the GRPO demo")
        return
    from policyopt.app.demo import demo as grpo_demo
    from policyopt.app.run import default_run_dir, load_yaml, parse_run_config

    grpo_config = CONFIG_DIR / "grpo_demo.yaml"
    lm_dir = default_run_dir(parse_run_config(load_yaml(grpo_config)))
    print(f"\npolicyopt demo 2/2: GRPO on the built-in language model ({grpo_config})", flush=True)
    grpo_demo(lm_dir, grpo_config, ["trainer.progress=lines"])
    print(f"results: {lm_dir.resolve()}  (config.yaml, metrics.jsonl, reward_curve.png, checkpoints/)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from policyopt.app.run import evaluate_run, resume, train
    from policyopt.core.config import ConfigError
    from policyopt.runtime.checkpoint import CheckpointError

    try:
        if args.command == "train":
            run_dir, record = train(args.config, args.overrides, args.run_dir, args.until_step, args.init_from)
            print(f"run dir: {run_dir}")
        elif args.command == "resume":
            run_dir, record = resume(args.run_dir, args.overrides, args.force, args.until_step)
            print(f"run dir: {run_dir}")
        elif args.command == "eval":
            out = evaluate_run(args.run_dir, args.episodes, not args.stochastic)
            (Path(args.run_dir) / "eval.json").write_text(json.dumps(out, indent=2))
            print(json.dumps(out, indent=2))
        elif args.command == "list":
            _list()
        else:
            _demo(args.classic_only)
    except (ConfigError, CheckpointError) as err:
        print(f"policyopt: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
