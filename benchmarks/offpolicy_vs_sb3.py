"""policyopt vs Stable-Baselines3, off-policy: DQN on CartPole-v1 and SAC on Pendulum-v1.

Both sides use RL-Zoo's tuned hyper-parameters (rl-baselines3-zoo hyperparams/dqn.yml, sac.yml),
the same seed, the same torch thread count, one env copy (SB3's DummyVecEnv vs gymnasium's sync
vector env), in one process. Our configs are the shipped ``configs/dqn_cartpole.yaml`` and
``configs/sac_pendulum.yaml``, which carry exactly those settings.

Per suite and side, one run:
  * time to threshold: evaluate 10 deterministic episodes (batched, fixed seeds) each time the env
    step counter crosses a multiple of ``eval_every``, clock paused meanwhile; stop at the
    threshold (CartPole 475, Pendulum -200) or the RL-Zoo budget. Reports training seconds and
    env steps at the first evaluation that reaches it.
  * training throughput: a separate run of ``throughput_steps`` env steps without evaluation
    (env steps / training seconds, random warm-up steps included on both sides).
Writes benchmarks/results/offpolicy_vs_sb3.json and .png (eval return vs training seconds).

    python benchmarks/offpolicy_vs_sb3.py                 # both suites
    python benchmarks/offpolicy_vs_sb3.py --suite dqn     # one suite
    python benchmarks/offpolicy_vs_sb3.py --quick         # smaller budgets (a smoke run)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

SUITES = {
    "dqn": {"env": "CartPole-v1", "config": "dqn_cartpole.yaml", "threshold": 475.0, "budget": 50_000,
            "eval_every": 2_560, "throughput_steps": 12_800,
            "sb3": dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
                        target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
                        exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]))},
    "sac": {"env": "Pendulum-v1", "config": "sac_pendulum.yaml", "threshold": -200.0, "budget": 20_000,
            "eval_every": 1_000, "throughput_steps": 2_000,
            "sb3": dict(learning_rate=1e-3)},
}


def evaluate_sb3(model, env_id: str, seed: int, episodes: int = 10) -> float:
    """Batched deterministic evaluation, the same protocol as policyopt's evaluator."""
    env = gym.make_vec(env_id, num_envs=episodes, vectorization_mode="sync")
    obs, _ = env.reset(seed=seed)
    ret, done = np.zeros(episodes), np.zeros(episodes, bool)
    while not done.all():
        action, _ = model.predict(obs, deterministic=True)
        obs, r, term, trunc, _ = env.step(action)
        ret += np.where(done, 0.0, r)
        done |= term | trunc
    env.close()
    return float(ret.mean())


def sb3_model(name: str, seed: int):
    from stable_baselines3 import DQN, SAC
    from stable_baselines3.common.env_util import make_vec_env

    suite = SUITES[name]
    env = make_vec_env(suite["env"], n_envs=1, seed=seed)
    cls = DQN if name == "dqn" else SAC
    return cls("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **suite["sb3"])


SB3_FLUSH_DENORMAL = False  # SB3 as shipped; --sb3-flush-denormal gives it our process setting too


def run_sb3(name: str, seed: int, budget: int, eval_every: int | None) -> dict:
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_flush_denormal(SB3_FLUSH_DENORMAL)  # ours sets it process-wide from its config

    suite = SUITES[name]

    class EvalStop(BaseCallback):
        def __init__(self):
            super().__init__()
            self.curve, self.train_s, self.t0, self.last = [], 0.0, time.perf_counter(), 0

        def _on_step(self) -> bool:
            n, last, self.last = self.num_timesteps, self.last, self.num_timesteps
            if eval_every is None or n // eval_every == last // eval_every:
                return True
            self.train_s += time.perf_counter() - self.t0
            self.curve.append((n, self.train_s, evaluate_sb3(self.model, suite["env"], 10_000 + seed)))
            self.t0 = time.perf_counter()
            return self.curve[-1][2] < suite["threshold"]

    model = sb3_model(name, seed)
    cb = EvalStop()
    model.learn(total_timesteps=budget, callback=cb)
    if not cb.curve or cb.curve[-1][2] < suite["threshold"]:
        cb.train_s += time.perf_counter() - cb.t0
    return summarize(cb.curve, model.num_timesteps, cb.train_s, suite["threshold"])


def run_ours(name: str, seed: int, budget: int, eval_every: int | None) -> dict:
    from policyopt.app.run import train
    from policyopt.runtime.metrics_log import MetricsLog

    suite = SUITES[name]
    run_dir = ROOT / "runs" / "bench_offpolicy" / f"{name}_s{seed}_{time.time_ns()}"
    ov = [f"seed={seed}", f"trainer.total_steps={budget}", f"trainer.eval_every_steps={eval_every or 0}",
          "trainer.eval_episodes=10", "trainer.progress=none", "trainer.tensorboard=false",
          f"trainer.torch_threads={torch.get_num_threads()}"]
    if eval_every is not None:
        ov.append(f"trainer.stop_at_eval_return={suite['threshold']}")
    train(ROOT / "configs" / suite["config"], ov, run_dir=run_dir)
    recs = MetricsLog.read(run_dir / "metrics.jsonl")
    curve = [(r["step"], r["time/train_s"], r["eval/return_mean"]) for r in recs if "eval/return_mean" in r]
    return summarize(curve, recs[-1]["step"], recs[-1]["time/train_s"], suite["threshold"])


def summarize(curve: list, steps: int, train_s: float, threshold: float) -> dict:
    hit = next((c for c in curve if c[2] >= threshold), None)
    return {"solved": hit is not None, "seconds_to_threshold": hit[1] if hit else None,
            "steps_to_threshold": hit[0] if hit else None, "steps": steps, "train_s": train_s,
            "steps_per_s": steps / train_s, "curve": curve}


def ratio(a, b):
    return a / b if a and b else None


def run_suite(name: str, seed: int, quick: bool) -> dict:
    suite = SUITES[name]
    budget = suite["budget"] // (4 if quick else 1)
    tp = suite["throughput_steps"] // (4 if quick else 1)
    out = {}
    for side, fn in (("sb3", run_sb3), ("ours", run_ours)):
        print(f"[{name}] {side}: time to threshold ...", flush=True)
        solve = fn(name, seed, budget, suite["eval_every"])
        print(f"[{name}] {side}: throughput over {tp} steps ...", flush=True)
        speed = fn(name, seed, tp, None)
        out[side] = {"to_threshold": solve, "train_steps_per_s": speed["steps_per_s"], "throughput_steps": tp}
        print(f"[{name}] {side}: solved={solve['solved']} at {solve['steps_to_threshold']} steps, "
              f"{solve['seconds_to_threshold']} s; {speed['steps_per_s']:.0f} steps/s", flush=True)
    o, s = out["ours"], out["sb3"]
    out["ratios"] = {
        "train_steps_per_s_ours_over_sb3": ratio(o["train_steps_per_s"], s["train_steps_per_s"]),
        "seconds_to_threshold_ours_over_sb3": ratio(o["to_threshold"]["seconds_to_threshold"],
                                                    s["to_threshold"]["seconds_to_threshold"]),
        "steps_to_threshold_ours_over_sb3": ratio(o["to_threshold"]["steps_to_threshold"],
                                                  s["to_threshold"]["steps_to_threshold"]),
    }
    out["settings"] = {"env": suite["env"], "threshold": suite["threshold"], "budget": budget,
                       "eval_every": suite["eval_every"], "seed": seed, "sb3_kwargs": repr(suite["sb3"]),
                       "ours_config": f"configs/{suite['config']}"}
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items()):
        for side, color in (("sb3", "tab:gray"), ("ours", "tab:blue")):
            curve = res[side]["to_threshold"]["curve"]
            ax.plot([c[1] for c in curve], [c[2] for c in curve], "o-", color=color, label=side, ms=3)
        ax.axhline(res["settings"]["threshold"], color="k", ls="--", lw=0.8)
        ax.set_xlabel("training wall-clock [s] (evaluation excluded)")
        ax.set_ylabel("eval return (10 episodes)")
        ax.set_title(f"{name.upper()} on {res['settings']['env']}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--suite", choices=["dqn", "sac", "all"], default="all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="quarter budgets (smoke run; thresholds may not be reached)")
    p.add_argument("--out", default=str(RESULTS / "offpolicy_vs_sb3.json"))
    p.add_argument("--sb3-flush-denormal", action="store_true",
                   help="also flush denormals for SB3 (ours does by default: see DQNConfig.flush_denormal)")
    args = p.parse_args()
    global SB3_FLUSH_DENORMAL
    SB3_FLUSH_DENORMAL = args.sb3_flush_denormal
    torch.set_num_threads(args.threads)
    names = ["dqn", "sac"] if args.suite == "all" else [args.suite]
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()).get("suites", {}) if out_path.exists() else {}
    for name in names:
        results[name] = run_suite(name, args.seed, args.quick)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"threads": args.threads, "torch": torch.__version__, "note": "shared 2-core machine; one run per side",
            "sb3_flush_denormal": args.sb3_flush_denormal, "command": "python benchmarks/offpolicy_vs_sb3.py"
            + (" --quick" if args.quick else "") + (" --sb3-flush-denormal" if args.sb3_flush_denormal else "")}
    out_path.write_text(json.dumps({"meta": meta, "suites": results}, indent=2))
    plot(results, out_path.with_suffix(".png"))
    for name, res in results.items():
        print(name, json.dumps(res["ratios"]))


if __name__ == "__main__":
    main()
