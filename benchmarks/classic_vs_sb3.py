"""policyopt vs Stable-Baselines3 on CartPole-v1, side by side in one process.

Three contestants, 5 seeds each, same machine, same torch thread count:
  * ``sb3``        SB3 PPO with the RL-Zoo hyper-parameters for CartPole-v1;
  * ``ours``       policyopt PPO with the shipped ``configs/ppo_cartpole.yaml``;
  * ``ours_zoo``   policyopt PPO with SB3's exact RL-Zoo hyper-parameters and the same kind of env
    vectorisation as SB3's DummyVecEnv (gymnasium ``sync``): like-for-like implementation speed;
  * ``ours_zoo_native`` the same hyper-parameters on gymnasium's natively batched CartPole.

Every contestant is evaluated with the same protocol: each time the env-step counter crosses a
multiple of ``--eval-every``, 10 deterministic episodes (fixed seeds, batched) are played; the clock
is paused meanwhile. A run stops when the mean return first reaches 475 or after ``--budget`` steps.
Reported per contestant: median/min/max training seconds to threshold, env steps at that point,
and ratios ours/SB3. Training throughput (env steps/s) is measured separately, like for like: each
contestant trains a fixed ``--throughput-steps`` without evaluation or early stop, so one-time costs
and different stopping points do not bias it. Writes JSON and a PNG of return against wall-clock.

    python benchmarks/classic_vs_sb3.py            # full (5 seeds)
    python benchmarks/classic_vs_sb3.py --seeds 1  # quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

THRESHOLD = 475.0
ZOO = dict(n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
           learning_rate=1e-3, clip_range=0.2)  # learning_rate and clip_range are linearly annealed (lin_*)
ZOO_OVERRIDES = ["env.num_envs=8", "ppo.num_steps=32", "ppo.minibatch_size=256", "ppo.update_epochs=20",
                 "ppo.gamma=0.98", "ppo.gae_lambda=0.8", "ppo.ent_coef=0.0", "ppo.learning_rate=1e-3",
                 "ppo.anneal_lr=true", "ppo.anneal_clip=true", "ppo.clip_coef=0.2", "ppo.max_grad_norm=0.5",
                 # SB3's value loss is vf_coef * MSE; ours is vf_coef * 0.5 * MSE, so 1.0 here == SB3's 0.5.
                 "ppo.vf_coef=1.0", "ppo.norm_adv=true", "ppo.adam_eps=1e-5", "ppo.net.hidden_sizes=[64,64]",
                 "ppo.net.activation=tanh"]


def sb3_throughput(seed: int, steps: int) -> float:
    """Env steps per second of SB3 PPO (RL-Zoo settings) training ``steps`` with no callback."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("CartPole-v1", n_envs=ZOO["n_envs"], seed=seed)
    kw = {k: v for k, v in ZOO.items() if k not in ("n_envs", "learning_rate", "clip_range")}
    model = PPO("MlpPolicy", env, learning_rate=lambda p: p * ZOO["learning_rate"],
                clip_range=lambda p: p * ZOO["clip_range"], seed=seed, device="cpu", verbose=0, **kw)
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    return model.num_timesteps / (time.perf_counter() - t0)


def ours_throughput(seed: int, steps: int, overrides: list[str], tag: str) -> float:
    """Env steps per second of policyopt training ``steps`` (time/train_s excludes the final eval)."""
    from policyopt.app.run import train

    cfg = Path(__file__).resolve().parent.parent / "configs" / "ppo_cartpole.yaml"
    run_dir = Path("runs/bench_classic") / f"{tag}_tp_s{seed}_{time.time_ns()}"
    _, last = train(cfg, overrides + [f"seed={seed}", f"trainer.total_steps={steps}", "trainer.eval_every_steps=0",
                                      "trainer.progress=none", "trainer.tensorboard=false",
                                      f"trainer.torch_threads={torch.get_num_threads()}"], run_dir=run_dir)
    return last["step"] / last["time/train_s"]


def run_sb3(seed: int, eval_every: int, budget: int) -> dict:
    from offpolicy_vs_sb3 import evaluate_sb3  # the same batched evaluation protocol for every SB3 run
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    def linear(v):
        return lambda progress_remaining: progress_remaining * v

    class EvalStop(BaseCallback):
        def __init__(self):
            super().__init__()
            self.curve, self.train_s, self.t0, self.last = [], 0.0, time.perf_counter(), 0

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            pass

        def _on_rollout_start(self) -> None:
            n = self.num_timesteps
            if n // eval_every > self.last // eval_every:
                self.train_s += time.perf_counter() - self.t0
                self.curve.append((n, self.train_s, evaluate_sb3(self.model, "CartPole-v1", 10_000 + seed)))
                self.t0 = time.perf_counter()
                if self.curve[-1][2] >= THRESHOLD:
                    self.model._stop = True
            self.last = n

    class StoppablePPO(PPO):
        def collect_rollouts(self, *a, **k):
            return False if getattr(self, "_stop", False) else super().collect_rollouts(*a, **k)

    env = make_vec_env("CartPole-v1", n_envs=ZOO["n_envs"], seed=seed)
    kw = {k: v for k, v in ZOO.items() if k not in ("n_envs", "learning_rate", "clip_range")}
    model = StoppablePPO("MlpPolicy", env, learning_rate=linear(ZOO["learning_rate"]),
                         clip_range=linear(ZOO["clip_range"]), seed=seed, device="cpu", verbose=0, **kw)
    cb = EvalStop()
    model.learn(total_timesteps=budget, callback=cb)
    cb.train_s += 0.0 if getattr(model, "_stop", False) else time.perf_counter() - cb.t0
    return summarize(cb.curve, model.num_timesteps, cb.train_s)


def run_ours(seed: int, eval_every: int, budget: int, overrides: list[str], tag: str) -> dict:
    from policyopt.app.run import train
    from policyopt.runtime.metrics_log import MetricsLog

    root = Path("runs/bench_classic")
    run_dir = root / f"{tag}_s{seed}_{time.time_ns()}"
    cfg = Path(__file__).resolve().parent.parent / "configs" / "ppo_cartpole.yaml"
    ov = overrides + [f"seed={seed}", f"trainer.total_steps={budget}", f"trainer.eval_every_steps={eval_every}",
                      "trainer.eval_episodes=10", f"trainer.stop_at_eval_return={THRESHOLD}", "trainer.progress=none",
                      "trainer.tensorboard=false", f"trainer.torch_threads={torch.get_num_threads()}"]
    train(cfg, ov, run_dir=run_dir)
    recs = MetricsLog.read(run_dir / "metrics.jsonl")
    curve = [(r["step"], r["time/train_s"], r["eval/return_mean"]) for r in recs if "eval/return_mean" in r]
    return summarize(curve, recs[-1]["step"], recs[-1]["time/train_s"])


def summarize(curve: list, steps: int, train_s: float) -> dict:
    hit = next((c for c in curve if c[2] >= THRESHOLD), None)
    return {"solved": hit is not None, "seconds_to_threshold": hit[1] if hit else None,
            "steps_to_threshold": hit[0] if hit else None, "steps": steps, "train_s": train_s, "curve": curve}


def stats(xs: list) -> dict:
    xs = [x for x in xs if x is not None]
    if not xs:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def report(results: dict) -> dict:
    out = {}
    for name, runs in results.items():
        out[name] = {"solved": f"{sum(r['solved'] for r in runs)}/{len(runs)}",
                     "seconds_to_threshold": stats([r["seconds_to_threshold"] for r in runs]),
                     "steps_to_threshold": stats([r["steps_to_threshold"] for r in runs]),
                     "train_steps_per_s": stats([r["train_steps_per_s"] for r in runs])}
    sb3 = out["sb3"]
    for name in [n for n in out if n != "sb3"]:
        o = out[name]
        t_sb3, t_o = sb3["seconds_to_threshold"]["median"], o["seconds_to_threshold"]["median"]
        o["ratio_seconds_to_threshold_vs_sb3"] = t_o / t_sb3 if t_sb3 and t_o else None
        o["ratio_steps_per_s_vs_sb3"] = o["train_steps_per_s"]["median"] / sb3["train_steps_per_s"]["median"]
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for (name, runs), color in zip(results.items(), ["tab:gray", "tab:blue", "tab:orange", "tab:green"]):
        for i, r in enumerate(runs):
            xs = [c[1] for c in r["curve"]]
            ys = [c[2] for c in r["curve"]]
            ax.plot(xs, ys, color=color, alpha=0.8, label=name if i == 0 else None)
    ax.axhline(THRESHOLD, color="k", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("training wall-clock [s] (evaluation excluded)")
    ax.set_ylabel("eval return (10 episodes)")
    ax.set_title("CartPole-v1: policyopt vs Stable-Baselines3")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=2048)
    p.add_argument("--budget", type=int, default=100_000)
    p.add_argument("--throughput-steps", type=int, default=20_480)
    p.add_argument("--out", default="benchmarks/results/classic_vs_sb3.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = {"sb3": [], "ours": [], "ours_zoo": [], "ours_zoo_native": []}
    zoo = ZOO_OVERRIDES + ["env.vectorization=sync"]
    zoo_native = ZOO_OVERRIDES + ["env.vectorization=vector_entry_point"]
    for seed in range(args.seeds):  # interleave contestants so machine noise hits all of them alike
        results["sb3"].append(run_sb3(seed, args.eval_every, args.budget))
        results["ours"].append(run_ours(seed, args.eval_every, args.budget, [], "ours"))
        results["ours_zoo"].append(run_ours(seed, args.eval_every, args.budget, zoo, "ours_zoo"))
        results["ours_zoo_native"].append(run_ours(seed, args.eval_every, args.budget, zoo_native, "ours_zoo_native"))
        results["sb3"][-1]["train_steps_per_s"] = sb3_throughput(seed, args.throughput_steps)
        results["ours"][-1]["train_steps_per_s"] = ours_throughput(seed, args.throughput_steps, [], "ours")
        results["ours_zoo"][-1]["train_steps_per_s"] = ours_throughput(seed, args.throughput_steps, zoo, "ours_zoo")
        results["ours_zoo_native"][-1]["train_steps_per_s"] = ours_throughput(seed, args.throughput_steps, zoo_native,
                                                                              "ours_zoo_native")
        print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]['seconds_to_threshold']}s/{v[-1]['train_steps_per_s']:.0f} sps"
                                           for k, v in results.items()), flush=True)
    summary = report(results)
    meta = {"threads": args.threads, "eval_every": args.eval_every, "budget": args.budget, "seeds": args.seeds,
            "throughput_steps": args.throughput_steps,
            "torch": torch.__version__}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "summary": summary, "runs": results}, indent=1))
    plot(results, out.with_suffix(".png"))
    print(json.dumps(summary, indent=1))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
