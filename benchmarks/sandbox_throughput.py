"""Sandboxed executions per second vs plain unsandboxed ``subprocess``, side by side in one process.

Two workloads, each run ``--n`` times, sequentially (1 worker) and with the worker pool
(``--workers``, default: all cores):

  * ``trivial``: a program that prints one line;
  * ``suite``:   a small unit-test suite (a sorting function against 10 call tests).

Contestants:

  * ``plain``       ``subprocess.run([python, -I, -S, -c, program])`` with no isolation at all (for the
                    suite, the candidate and an inline ``assert`` harness in one process, the way
                    human-eval-style harnesses run tests);
  * ``weak``        policyopt's ``subprocess`` backend (rlimits, scrubbed env, parent-side grading);
  * ``bwrap``       policyopt's default bubblewrap sandbox (namespaces, read-only system, tmpfs, ...).

Prints executions/s and the overhead ratio ``plain / sandboxed`` and writes
``benchmarks/results/sandbox_throughput.json`` (+ a PNG bar chart when matplotlib is present).

    python benchmarks/sandbox_throughput.py            # default: n=60
    python benchmarks/sandbox_throughput.py --n 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from policyopt.lm.sandbox import CallTest, Sandbox, SandboxConfig, SandboxPool, Verdict
from policyopt.lm.sandbox.backends import resolve_interpreter
from policyopt.lm.sandbox.pool import default_workers

TRIVIAL = "print('hello')\n"
CANDIDATE = "def sort_list(xs):\n    return sorted(xs)\n"
CASES = [([3, 1, 2], [1, 2, 3]), ([], []), ([5], [5]), ([2, 2, 1], [1, 2, 2]),
         (list(range(9, -1, -1)), list(range(10))), ([-1, 1, 0], [-1, 0, 1]), ([1.5, 0.5], [0.5, 1.5]),
         (["b", "a"], ["a", "b"]), ([0, 0], [0, 0]), ([7, 3, 9, 1], [1, 3, 7, 9])]
TESTS = [CallTest(f"sort_list({args!r})", want) for args, want in CASES]
PLAIN_SUITE = CANDIDATE + "".join(f"assert sort_list({a!r}) == {w!r}\n" for a, w in CASES)


def rate(fn: Callable[[int], bool], n: int, workers: int) -> dict[str, float]:
    """Executions/s of ``fn`` over ``n`` calls on ``workers`` threads; every call must succeed."""
    fn(0)  # warm-up (probe caches, page cache)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as ex:
        ok = list(ex.map(fn, range(n)))
    elapsed = time.perf_counter() - start
    if not all(ok):
        raise RuntimeError(f"{ok.count(False)} of {n} executions failed")
    return {"executions_per_s": n / elapsed, "seconds": elapsed, "n": n, "workers": workers}


def contestants(python: str, bwrap: Sandbox, weak: Sandbox) -> dict[str, dict[str, Callable[[int], bool]]]:
    def plain(program: str) -> Callable[[int], bool]:
        return lambda _: subprocess.run([python, "-I", "-S", "-c", program], stdin=subprocess.DEVNULL,
                                        capture_output=True, env={}, timeout=10).returncode == 0

    def script(box: Sandbox) -> Callable[[int], bool]:
        return lambda _: box.run(TRIVIAL)[0].verdict is Verdict.PASS

    def suite(box: Sandbox) -> Callable[[int], bool]:
        return lambda _: box.run_call_tests(CANDIDATE, TESTS).pass_fraction == 1.0

    return {"trivial": {"plain": plain(TRIVIAL), "weak": script(weak), "bwrap": script(bwrap)},
            "suite": {"plain": plain(PLAIN_SUITE), "weak": suite(weak), "bwrap": suite(bwrap)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=60, help="executions per (workload, contestant, workers)")
    parser.add_argument("--workers", type=int, default=default_workers(), help="pool size (default: cores)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sandbox_throughput.json")
    args = parser.parse_args()

    bwrap = Sandbox(SandboxConfig())
    weak = Sandbox(SandboxConfig(backend="subprocess", trust="trusted"))
    python = resolve_interpreter("auto")
    results: dict = {"machine": {"cpus": os.cpu_count(), "workers": args.workers, "python_inside": python,
                                 "platform": platform.platform(), "loadavg_at_start": os.getloadavg(),
                                 "note": "2-core VM shared with other jobs"}}
    for workload, fns in contestants(python, bwrap, weak).items():
        results[workload] = {}
        for workers in sorted({1, args.workers}):
            row = {name: rate(fn, args.n, workers) for name, fn in fns.items()}
            for name in ("weak", "bwrap"):
                row[name]["overhead_vs_plain"] = row["plain"]["executions_per_s"] / row[name]["executions_per_s"]
            results[workload][f"workers_{workers}"] = row
            print(f"{workload:8s} workers={workers}: " + "  ".join(
                f"{k} {v['executions_per_s']:7.1f}/s" for k, v in row.items())
                + f"  | overhead bwrap {row['bwrap']['overhead_vs_plain']:.2f}x"
                  f" weak {row['weak']['overhead_vs_plain']:.2f}x")
    pool = SandboxPool(args.workers)
    reports = pool.map(lambda _: bwrap.run_call_tests(CANDIDATE, TESTS), range(args.n))
    assert all(r.pass_fraction == 1.0 for r in reports)
    results["pool_stats"] = pool.stats()
    pool.close()
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    _plot(results, args.out.with_suffix(".png"), args.workers)


def _plot(results: dict, path: Path, workers: int) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, workload in zip(axes, ("trivial", "suite")):
        row = results[workload][f"workers_{workers}"]
        names = list(row)
        ax.bar(names, [row[n]["executions_per_s"] for n in names], color=["#999", "#e9a23b", "#3b7de9"])
        ax.set_title(f"{workload} ({workers} workers)")
        ax.set_ylabel("executions / s")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
