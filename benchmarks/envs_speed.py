"""Native batch vs ``gymnasium.vector.SyncVectorEnv`` of single envs: env steps per second.

For every policyopt environment and ``N`` in (1, 64, 1024) copies, steps the native vector env
(``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")``) and the same environment in a
``SyncVectorEnv`` (``vectorization_mode="sync"``: N single envs, each the same code at ``num_envs=1``)
with identical random valid actions, in one process, and reports steps/s and the ratio.
Target: >= 50x at 1024 copies. For the job shop it also measures a plain-Python scalar job shop
(``ScalarJobShop``, written the conventional way) in ``SyncVectorEnv``, so the ratio is not only
numpy's per-call overhead at N=1. Writes benchmarks/results/envs_speed.json and envs_speed.png.

    OMP_NUM_THREADS=1 python benchmarks/envs_speed.py [--seconds 1.0] [--sizes 1 64 1024] [--only JobShop]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import gymnasium
import numpy as np

import policyopt.envs

RESULTS = Path(__file__).parent / "results"


class ScalarJobShop(gymnasium.Env):
    """Reference point: a job shop written the usual way, one instance in plain Python (lists, ints).

    Same dynamics, reward and observation layout as ``policyopt/JobShop-v0`` (random 6x6 instances
    from numpy's generator instead of the counter-based stream), so that ``SyncVectorEnv`` of these
    shows what a conventional single env costs, independent of numpy's per-call overhead at N=1.
    """

    def __init__(self, n_jobs: int = 6, n_machines: int = 6, max_duration: int = 99):
        self.j, self.m, self.max_d = n_jobs, n_machines, max_duration
        self.scale = float(max_duration * n_machines)
        dim = n_jobs * (6 + n_machines) + n_machines + 1
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(n_jobs)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        rng = self.np_random
        self.dur = rng.integers(1, self.max_d + 1, (self.j, self.m)).tolist()
        self.mac = [list(rng.permutation(self.m)) for _ in range(self.j)]
        self.nxt, self.jr, self.mr = [0] * self.j, [0] * self.j, [0] * self.m
        self.rem = [sum(row) for row in self.dur]
        self.lb, self.t = max(self.rem), 0
        return self._obs(), {"action_mask": self._mask()}

    def _mask(self):
        return np.array([k < self.m for k in self.nxt], dtype=bool)

    def _obs(self):
        out, est = [], []
        for j in range(self.j):
            k = self.nxt[j]
            est.append(max(self.jr[j], self.mr[self.mac[j][k]]) if k < self.m else None)
        t0 = min((e for e in est if e is not None), default=max(self.jr))
        for j in range(self.j):
            k, done = self.nxt[j], self.nxt[j] >= self.m
            d = 0 if done else self.dur[j][k]
            onehot = [0.0] * self.m
            if not done:
                onehot[self.mac[j][k]] = 1.0
            out += [float(done), k / self.m, self.rem[j] / self.scale, d / self.max_d,
                    0.0 if done else (est[j] - t0) / self.scale, 0.0 if done else (est[j] + d - self.lb) / self.scale]
            out += onehot
        out += [(r - t0) / self.scale for r in self.mr] + [self.t / (self.j * self.m)]
        return np.asarray(out, dtype=np.float32)

    def step(self, action):
        j = int(action)
        k = self.nxt[j]
        mac, d = self.mac[j][k], self.dur[j][k]
        end = max(self.jr[j], self.mr[mac]) + d
        self.jr[j] = self.mr[mac] = end
        self.nxt[j], self.rem[j], self.t = k + 1, self.rem[j] - d, self.t + 1
        lb = max(r + w for r, w in zip(self.jr, self.rem))
        reward, self.lb = (self.lb - lb) / self.max_d, lb
        done = self.t == self.j * self.m
        return self._obs(), reward, done, False, {"action_mask": self._mask()}


def random_actions(space, n: int, rng: np.random.Generator, info: dict) -> np.ndarray:
    """Uniform valid actions ``[n, ...]`` (respecting ``info["action_mask"]`` when present)."""
    if isinstance(space, gymnasium.spaces.Discrete):
        mask = info.get("action_mask", np.ones((n, int(space.n)), dtype=bool))
        return (rng.random(mask.shape) * mask).argmax(axis=1)
    return rng.random((n, *space.shape)).astype(space.dtype) * (space.high - space.low) + space.low


def steps_per_second(env, n: int, seconds: float, seed: int = 0) -> float:
    """Env steps per second (copies x vector steps) over about ``seconds`` of stepping."""
    rng = np.random.default_rng(seed)
    _, info = env.reset(seed=seed)
    for _ in range(3):  # warm-up
        _, _, _, _, info = env.step(random_actions(env.single_action_space, n, rng, info))
    steps, start = 0, time.perf_counter()
    while True:
        for _ in range(5):
            _, _, _, _, info = env.step(random_actions(env.single_action_space, n, rng, info))
        steps += 5
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return steps * n / elapsed


def measure(env_id: str, sizes: list[int], seconds: float) -> dict:
    out = {}
    for n in sizes:
        native = gymnasium.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point")
        sync = gymnasium.make_vec(env_id, num_envs=n, vectorization_mode="sync")
        native_sps = steps_per_second(native, n, seconds)
        sync_sps = steps_per_second(sync, n, seconds)
        native.close()
        sync.close()
        out[str(n)] = {"native_steps_per_s": native_sps, "sync_steps_per_s": sync_sps,
                       "ratio": native_sps / sync_sps}
        print(f"{env_id:32s} N={n:5d}  native {native_sps:12,.0f}/s  sync {sync_sps:10,.0f}/s  "
              f"ratio {native_sps / sync_sps:7.1f}x", flush=True)
    return out


def measure_scalar_reference(sizes: list[int], seconds: float) -> dict:
    """Native JobShop batch vs ``SyncVectorEnv`` of the plain-Python :class:`ScalarJobShop`."""
    out = {}
    for n in sizes:
        native = gymnasium.make_vec("policyopt/JobShop-v0", num_envs=n, vectorization_mode="vector_entry_point")
        sync = gymnasium.vector.SyncVectorEnv([ScalarJobShop for _ in range(n)])
        native_sps, sync_sps = steps_per_second(native, n, seconds), steps_per_second(sync, n, seconds)
        out[str(n)] = {"native_steps_per_s": native_sps, "sync_steps_per_s": sync_sps, "ratio": native_sps / sync_sps}
        print(f"{'JobShop vs plain-Python scalar':32s} N={n:5d}  native {native_sps:12,.0f}/s  "
              f"sync {sync_sps:10,.0f}/s  ratio {native_sps / sync_sps:7.1f}x", flush=True)
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k.split("/")[1] if not k.startswith("reference/") else "JobShop vs\nplain Python" for k in results]
    sizes = list(next(iter(results.values())))
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(sizes)
    for j, n in enumerate(sizes):
        ax.bar(np.arange(len(names)) + j * width, [results[k][n]["ratio"] for k in results], width, label=f"N={n}")
    ax.axhline(50, color="k", ls="--", lw=1, label="target 50x")
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(names)) + width * (len(sizes) - 1) / 2, names, rotation=20)
    ax.set_ylabel("native / SyncVectorEnv steps per s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="timing window per measurement")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 1024])
    parser.add_argument("--only", nargs="*", default=None, help="env names to run (e.g. JobShop)")
    args = parser.parse_args()
    ids = [i for i in policyopt.envs.ENV_IDS if not args.only or i.split("/")[1].split("-")[0] in args.only]
    results = {env_id: measure(env_id, args.sizes, args.seconds) for env_id in ids}
    if "policyopt/JobShop-v0" in results:
        results["reference/ScalarJobShop"] = measure_scalar_reference(args.sizes, args.seconds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "envs_speed",
        "note": "env steps/s (copies x vector steps), random valid actions, one process; shared 2-core machine",
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "gymnasium": gymnasium.__version__,
                    "cpu_count": os.cpu_count(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "seconds_per_measurement": args.seconds,
        "results": results,
    }
    (RESULTS / "envs_speed.json").write_text(json.dumps(payload, indent=2))
    plot(results, RESULTS / "envs_speed.png")
    big = str(max(args.sizes))
    worst = min(r[big]["ratio"] for k, r in results.items() if not k.startswith("reference/"))
    print(f"min ratio vs SyncVectorEnv of our single envs at N={big}: {worst:.1f}x (target >= 50x)")
    if "reference/ScalarJobShop" in results:
        print(f"JobShop vs SyncVectorEnv of a plain-Python scalar job shop at N={big}: "
              f"{results['reference/ScalarJobShop'][big]['ratio']:.1f}x")
    print(f"wrote {RESULTS / 'envs_speed.json'}")


if __name__ == "__main__":
    main()
