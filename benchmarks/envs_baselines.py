"""Baselines vs a short PPO run vs the optimum (where known) for every policyopt environment.

For each environment: the classical baselines, a PPO policy trained here with ``configs/ppo_<env>.yaml``
(through ``policyopt.app.run.train``, the same path as ``policyopt train``), and for the job shop
the OR-Tools CP-SAT optimum. All are scored on the same held-out seeds (disjoint from training, which
uses seeds derived from the config seed). Writes benchmarks/results/envs_baselines.json and prints a
markdown table.

    OMP_NUM_THREADS=1 python benchmarks/envs_baselines.py [--ppo-scale 1.0] [--skip-ppo] [--only JobShop]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from policyopt.envs import bandits, bidding, inventory, pathplanning, portfolio
from policyopt.envs.jobshop import JobShopVectorEnv
from policyopt.envs.jobshop_baselines import RULES, instances_of, rule_actions, solve_cpsat
from policyopt.envs.mapf import LifelongMAPFEnv, shortest_path_actions

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
EVAL_SEED = 123_456  # held out: training seeds come from derive_seed(config seed, ...)
Act = Callable[[object, np.ndarray, dict], np.ndarray]


# ---------------------------------------------------------------------------------------------- runners
def run_episodes(env, act: Act, max_steps: int = 100_000, seed: int = EVAL_SEED):
    """First episode of every copy of a native vector env: ``(returns [N], terminal info {key: [N]})``."""
    obs, info = env.reset(seed=seed)
    n = env.num_envs
    returns, done = np.zeros(n), np.zeros(n, bool)
    final: dict[str, np.ndarray] = {}
    for _ in range(max_steps):
        obs, r, term, trunc, info = env.step(act(env, obs, info))
        returns += np.where(done, 0.0, r)
        ended = (term | trunc) & ~done
        for key, value in info.items():
            if not key.startswith("_"):
                final.setdefault(key, np.zeros_like(value))[ended] = value[ended]
        done |= ended
        if done.all():
            return returns, final
    raise RuntimeError("episodes did not end")


def ppo_policy(run_dir: Path, deterministic: bool = True) -> Act:
    """Action function (the mode, or samples if not ``deterministic``) of a policyopt PPO run's last checkpoint."""
    from policyopt.app.run import build_trainer, parse_run_config
    from policyopt.core.config import load_yaml
    from policyopt.runtime import checkpoint as ckpt

    cfg = parse_run_config(load_yaml(run_dir / "config.yaml"))
    trainer = build_trainer(cfg, run_dir)
    tree, _ = ckpt.load_checkpoint(run_dir)
    trainer.load_state_dict(tree)
    policy, normalize = trainer.algorithm.policy, trainer.collector.normalize_eval_obs
    gen = torch.Generator().manual_seed(0)

    def act(env, obs, info):
        flat = normalize(np.asarray(obs, dtype=np.float32).reshape(len(obs), -1))
        mask = info.get("action_mask")
        with torch.no_grad():
            a, _, _ = policy.act(torch.from_numpy(np.ascontiguousarray(flat, dtype=np.float32)),
                                 None if mask is None else torch.from_numpy(mask), gen, deterministic=deterministic)
        return policy.to_env_actions(a)

    return act


def train_ppo(name: str, scale: float) -> tuple[Path | None, dict]:
    """Train ``configs/ppo_<name>.yaml`` for ``scale`` x its total_steps; returns (run dir, info)."""
    from policyopt.app.run import train
    from policyopt.core.config import load_yaml

    path = ROOT / "configs" / f"ppo_{name}.yaml"
    steps = max(int(load_yaml(path)["trainer"]["total_steps"] * scale), 1)
    run_dir = ROOT / "runs" / f"envs_baselines_{name}_{time.strftime('%Y%m%d-%H%M%S')}"
    start = time.perf_counter()
    train(path, [f"trainer.total_steps={steps}", "trainer.progress=none", "trainer.eval_every_steps=0",
                 "trainer.tensorboard=false"], run_dir=run_dir)
    return run_dir, {"train_steps": steps, "train_seconds": round(time.perf_counter() - start, 1),
                     "config": str(path.relative_to(ROOT))}


def row(env: str, method: str, metric: str, values: np.ndarray, **extra) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"env": env, "method": method, "metric": metric, "mean": float(v.mean()),
            "sem": float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0, "n": int(len(v)), **extra}


# ---------------------------------------------------------------------------------------------- job shop
def jobshop_rows(n: int, ppos: dict) -> list[dict]:
    rows, env_name = [], "JobShop random 6x6"
    probe = JobShopVectorEnv(num_envs=n)
    probe.reset(seed=EVAL_SEED)
    optimum = np.array([solve_cpsat(inst, time_limit_s=10.0)["makespan"] for inst in instances_of(probe)])
    methods: dict[str, Act] = {rule: (lambda r: lambda env, o, i: rule_actions(env, r))(rule) for rule in RULES}
    methods.update({label: act for label, (act, _) in ppos.items()})
    makespans = {}
    for method, act in methods.items():
        _, final = run_episodes(JobShopVectorEnv(num_envs=n), act)
        makespans[method] = final["makespan"]
        gap = final["makespan"] / optimum - 1.0
        rows.append(row(env_name, method, "makespan", final["makespan"], gap_mean=float(gap.mean()),
                        **ppos.get(method, (None, {}))[1]))
    rows.append(row(env_name, "CP-SAT (optimum)", "makespan", optimum, gap_mean=0.0))
    if "PPO" in makespans:  # paired, per instance: PPO against the best rule on these instances
        best = min(RULES, key=lambda r: makespans[r].mean())
        diff = makespans["PPO"] - makespans[best]
        rows.append(row(env_name, f"PPO - best rule ({best})", "makespan difference", diff,
                        ppo_better_fraction=float((diff < 0).mean()), ties_fraction=float((diff == 0).mean())))
    for name in ("ft06", "la01"):
        opt = solve_cpsat(JobShopVectorEnv(1, instance=name).instance, time_limit_s=30.0)
        for method, act in methods.items():
            if method in ppos and name != "ft06":
                continue  # the PPO policy was trained on 6x6 instances
            _, final = run_episodes(JobShopVectorEnv(num_envs=1, instance=name), act)
            ms = final["makespan"]
            rows.append(row(f"JobShop {name}", method, "makespan", ms, gap_mean=float(ms[0] / opt["makespan"] - 1)))
        rows.append(row(f"JobShop {name}", "CP-SAT", "makespan", [opt["makespan"]], optimal=opt["optimal"]))
    return rows


# ---------------------------------------------------------------------------------------------- the others
def lotsizing_rows(n: int, ppos: dict) -> list[dict]:
    tuned = inventory.tune_s_S(episodes=32, seed=0)
    s, S = tuned["s"], tuned["S"]
    methods = {
        "(s,S) tuned": lambda env, o, i: inventory.s_S_actions(env, np.broadcast_to(s, env.inventory.shape),
                                                              np.broadcast_to(S, env.inventory.shape)),
        "order nothing": lambda env, o, i: np.zeros((env.num_envs, env.n_items), np.float32),
    }
    extra = {"(s,S) tuned": {"s": s.tolist(), "S": S.tolist()}}
    return _generic("LotSizing", lambda: inventory.LotSizingVectorEnv(num_envs=n), methods, ppos,
                    "return (-cost/50)", lambda ret, fin: ret, extra=extra)


def portfolio_rows(n: int, ppos: dict) -> list[dict]:
    methods = {name: (lambda b: lambda env, o, i: portfolio.baseline_actions(env, b))(name)
               for name in ("equal_weight", "buy_and_hold", "mean_variance")}
    rows = _generic("Portfolio", lambda: portfolio.PortfolioVectorEnv(num_envs=n), methods, ppos,
                    "final log wealth", lambda ret, fin: np.log(fin["wealth"]))
    rows += _generic("Portfolio", lambda: portfolio.PortfolioVectorEnv(num_envs=n), methods, ppos,
                     "DSR return", lambda ret, fin: ret)
    return rows


def bandits_rows(n: int, ppos: dict) -> list[dict]:
    cache: dict[int, np.ndarray] = {}

    def whittle(env, o, i):
        key = int(env.period[0])  # indices depend only on the episode's arm parameters
        if key == 0 or id(env) not in cache:
            cache[id(env)] = bandits.whittle_indices(env.p_passive, env.p_active, env.value)
        return bandits.baseline_scores(env, "whittle", whittle=cache[id(env)])

    rng = np.random.default_rng(0)
    methods = {"random": lambda env, o, i: bandits.baseline_scores(env, "random", rng),
               "myopic": lambda env, o, i: bandits.baseline_scores(env, "myopic"), "whittle": whittle}
    return _generic("RestlessBandits", lambda: bandits.RestlessBanditVectorEnv(num_envs=n), methods, ppos,
                    "return", lambda ret, fin: ret)


def bidding_rows(n: int, ppos: dict) -> list[dict]:
    methods = {}
    for name in ("constant", "linear", "paced_linear"):
        base = bidding.tune_baseline(name, episodes=32, seed=0)["base"]
        methods[f"{name} (base {base:.0f})"] = (lambda b, nm: lambda env, o, i: bidding.baseline_bids(env, nm, b))(
            base, name)
    return _generic("Bidding", lambda: bidding.BiddingVectorEnv(num_envs=n), methods, ppos,
                    "expected clicks", lambda ret, fin: fin["expected_clicks"])


def pathplanning_rows(n: int, ppos: dict) -> list[dict]:
    methods = {name: (lambda b: lambda env, o, i: pathplanning.baseline_actions(env, b))(name)
               for name in ("straight", "potential_field", "border")}
    return _generic("PathPlanning", lambda: pathplanning.PathPlanningVectorEnv(num_envs=n), methods, ppos,
                    "success rate", lambda ret, fin: ret)


def _generic(env_name, make, methods, ppos, metric, score, extra=None) -> list[dict]:
    rows = []
    methods = {**methods, **{label: act for label, (act, _) in ppos.items()}}
    for method, act in methods.items():
        ret, final = run_episodes(make(), act)
        info = ppos[method][1] if method in ppos else (extra or {}).get(method, {})
        rows.append(row(env_name, method, metric, score(ret, final), **info))
    return rows


def mapf_rows(n: int, ppos: dict) -> list[dict]:
    from policyopt.core.config import load_yaml

    kwargs = load_yaml(ROOT / "configs" / "ppo_mapf.yaml")["env"].get("kwargs", {})  # same world as PPO's
    seeds = range(EVAL_SEED, EVAL_SEED + max(n // 32, 4))
    rng = np.random.default_rng(0)
    methods = {"random": lambda env: rng.integers(0, 5, env.n_agents),
               "shortest-path planner": lambda env: shortest_path_actions(env, rng, 0.2)}
    for label, (act, _) in ppos.items():
        methods[label] = (lambda f: lambda env: f(env, env.observation_array(), {}))(act)
    rows = []
    for method, act in methods.items():
        throughput = []
        for seed in seeds:
            env = LifelongMAPFEnv(**kwargs)
            env.reset(seed=seed)
            while env.agents:
                a = act(env)
                env.step({f"agent_{i}": int(a[i]) for i in range(env.n_agents)})
            throughput.append(env.throughput)
        rows.append(row("MAPF 12x12, 8 agents", method, "throughput (goals/step)", throughput,
                        **ppos.get(method, (None, {}))[1]))
    return rows


# extra PPO configs per section: (config name, label in the table)
EXTRA_PPO = {"PathPlanning": [("pathplanning_shaped", "PPO (trained with distance shaping)")]}
# sections whose PPO policy is scored by sampling (a deterministic shared policy deadlocks head-on pairs)
SAMPLED = {"MAPF"}
SECTIONS = {"JobShop": ("jobshop", jobshop_rows), "LotSizing": ("lotsizing", lotsizing_rows),
            "Portfolio": ("portfolio", portfolio_rows), "RestlessBandits": ("restlessbandits", bandits_rows),
            "Bidding": ("bidding", bidding_rows), "PathPlanning": ("pathplanning", pathplanning_rows),
            "MAPF": ("mapf", mapf_rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=256, help="held-out episodes per method")
    parser.add_argument("--ppo-scale", type=float, default=1.0, help="fraction of each config's total_steps")
    parser.add_argument("--skip-ppo", action="store_true")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out_path = RESULTS / "envs_baselines.json"
    previous = json.loads(out_path.read_text())["rows"] if out_path.exists() and args.only else []
    rows = [r for r in previous if not any(r["env"].startswith(k) for k in (args.only or []))]
    for key, (config_name, section) in SECTIONS.items():
        if args.only and key not in args.only:
            continue
        ppos = {}
        if not args.skip_ppo:
            for cfg_name, label in [(config_name, "PPO")] + EXTRA_PPO.get(key, []):
                run_dir, info = train_ppo(cfg_name, args.ppo_scale)
                sampled = key in SAMPLED
                ppos[label + (" (sampled actions)" if sampled else "")] = (
                    ppo_policy(run_dir, deterministic=not sampled), {**info, "sampled_actions": sampled})
        n = 100 if key == "JobShop" else args.episodes
        new = section(n, ppos)
        rows += new
        for r in new:
            print(f"| {r['env']} | {r['method']} | {r['metric']} | {r['mean']:.4g} ± {r['sem']:.2g} |"
                  + (f" gap {100 * r['gap_mean']:.1f}% |" if "gap_mean" in r else ""), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"benchmark": "envs_baselines", "eval_seed": EVAL_SEED,
                                    "note": "shared 2-core CPU; PPO = short run of configs/ppo_<env>.yaml",
                                    "rows": rows}, indent=2))
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
