"""A short Markdown report per experiment: several algorithms (or configs) x several seeds.

    python -m policyopt.app.report dqn_vs_sac_cartpole \\
        --algo dqn=configs/dqn_cartpole.yaml --algo ppo=configs/ppo_cartpole.yaml \\
        --seeds 0 1 2 3 4 --threshold 475 --override trainer.total_steps=20000

writes ``reports/<name>/``: ``report.md`` (IQM / mean / median of the final evaluation score with
95% stratified-bootstrap CIs, probability of improvement, time-to-threshold), ``curves.png``
(IQM learning curves with CI bands), ``profile.png`` (performance profiles) and ``summary.json``.
Runs are kept under ``reports/<name>/runs`` and reused when the command is repeated.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from policyopt.app.experiments import run_seeds
from policyopt.eval import stats


def summarize(runs: dict[str, list[Path]], threshold: float | None = None, key: str = "eval/return_mean",
              n_resamples: int = 2000) -> dict:
    """Statistics of the final score of each run (the last ``key`` it logged) per algorithm."""
    curves = {algo: [stats.load_curve(d, key) for d in dirs] for algo, dirs in runs.items()}
    final = {algo: np.array([v[-1] for _, v in cs]) for algo, cs in curves.items()}
    out: dict = {"key": key, "threshold": threshold, "seeds": {a: len(d) for a, d in runs.items()},
                 "final_scores": {a: s.tolist() for a, s in final.items()},
                 "aggregates": stats.aggregate(final, n_resamples=n_resamples)}
    algos = list(runs)
    if len(algos) >= 2:
        base = algos[0]
        out["probability_of_improvement"] = {
            f"P({a} > {base})": stats.probability_of_improvement(final[a], final[base], n_resamples=n_resamples)
            .as_dict() for a in algos[1:]}
    if threshold is not None:
        ttt = {a: [stats.time_to_threshold(s, v, threshold) for s, v in cs] for a, cs in curves.items()}
        out["time_to_threshold"] = {a: {"steps": t, "reached": sum(x is not None for x in t),
                                        "median_steps_of_reached": _median([x for x in t if x is not None])}
                                    for a, t in ttt.items()}
    return out


def _median(xs: list) -> float | None:
    return float(np.median(xs)) if xs else None


def plot_curves(runs: dict[str, list[Path]], path: Path, key: str = "eval/return_mean",
                threshold: float | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for algo, dirs in runs.items():
        steps, values = stats.align_curves([stats.load_curve(d, key) for d in dirs])
        mid, low, high = stats.curve_bands(values, n_resamples=500)
        line, = ax.plot(steps, mid, label=f"{algo} (IQM, n={len(dirs)})")
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, lw=0)
    if threshold is not None:
        ax.axhline(threshold, color="k", ls="--", lw=0.8)
    ax.set_xlabel("env steps")
    ax.set_ylabel(key)
    ax.set_title("learning curves: IQM over seeds, 95% stratified-bootstrap CI")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_profiles(final: dict[str, list[float]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    everything = np.concatenate([np.asarray(v, float) for v in final.values()])
    lo, hi = float(everything.min()), float(everything.max())
    taus = np.linspace(lo - 1e-9 - 0.05 * abs(hi - lo), hi, 60)
    fig, ax = plt.subplots(figsize=(7, 4))
    for algo, scores in final.items():
        mid, low, high = stats.performance_profile(scores, taus, n_resamples=500)
        line, = ax.plot(taus, mid, label=algo)
        ax.fill_between(taus, low, high, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("final score tau")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_title("performance profile (95% CI)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(name: str, summary: dict, command: str | None = None) -> str:
    lines = [f"# {name}", "", f"Score: the last `{summary['key']}` of each run; seeds per algorithm: "
             + ", ".join(f"{a} {n}" for a, n in summary["seeds"].items()) + ".", "",
             "| algorithm | IQM [95% CI] | mean [95% CI] | median [95% CI] |", "|---|---|---|---|"]
    for algo, agg in summary["aggregates"].items():
        cells = [f"{agg[k]['value']:.2f} [{agg[k]['ci_low']:.2f}, {agg[k]['ci_high']:.2f}]"
                 for k in ("iqm", "mean", "median")]
        lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    for label, e in summary.get("probability_of_improvement", {}).items():
        lines += ["", f"{label} = {e['value']:.2f} [{e['ci_low']:.2f}, {e['ci_high']:.2f}]"]
    if "time_to_threshold" in summary:
        lines += ["", f"Time to threshold {summary['threshold']} (env steps at the first evaluation reaching it):", "",
                  "| algorithm | reached | median steps (of those reaching it) |", "|---|---|---|"]
        for algo, t in summary["time_to_threshold"].items():
            med = "-" if t["median_steps_of_reached"] is None else f"{t['median_steps_of_reached']:,.0f}"
            lines.append(f"| {algo} | {t['reached']}/{len(t['steps'])} | {med} |")
    lines += ["", "![learning curves](curves.png)", "", "![performance profile](profile.png)", "",
              "CIs: stratified bootstrap (percentile, scipy.stats.bootstrap), Agarwal et al., 2021. "
              "Few seeds give wide intervals: read them before reading the point estimates."]
    if command:
        lines += ["", "Reproduce:", "", f"    {command}"]
    return "\n".join(lines) + "\n"


def write_report(name: str, runs: dict[str, list[Path]], out_dir: str | Path, threshold: float | None = None,
                 key: str = "eval/return_mean", command: str | None = None) -> Path:
    """Write report.md, curves.png, profile.png and summary.json into ``out_dir``; returns report.md."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(runs, threshold, key)
    plot_curves(runs, out_dir / "curves.png", key, threshold)
    plot_profiles(summary["final_scores"], out_dir / "profile.png")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    path = out_dir / "report.md"
    path.write_text(markdown(name, summary, command))
    return path


def main(argv: list[str] | None = None) -> int:
    import sys

    p = argparse.ArgumentParser(prog="python -m policyopt.app.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name")
    p.add_argument("--algo", action="append", required=True, help="label=CONFIG.yaml (repeat)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--override", action="append", default=[], help="dotted.key=value for every run (repeat)")
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--out", default=None, help="default: reports/<name>")
    args = p.parse_args(argv)
    out = Path(args.out or Path("reports") / args.name)
    runs = {}
    for item in args.algo:
        label, sep, config = item.partition("=")
        if not sep:
            p.error(f"--algo {item!r}: expected label=CONFIG.yaml")
        runs[label] = run_seeds(config, args.seeds, out / "runs", args.override, tag=label)
    path = write_report(args.name, runs, out, args.threshold, command=" ".join(["python -m policyopt.app.report",
                                                                                *(argv or sys.argv[1:])]))
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
