"""Statistics you can trust over several seeds (Agarwal et al., 2021, "Deep RL at the Edge of the
Statistical Precipice", NeurIPS, arXiv:2108.13264 — the ``rliable`` method):

* the interquartile mean (IQM: the mean of the middle 50% of all run scores, ``scipy.stats.trim_mean``
  with 25% cut at both ends);
* 95% confidence intervals by *stratified* bootstrap: runs are resampled with replacement within
  each task independently (``scipy.stats.bootstrap`` with one sample per task), percentile method;
* performance profiles (score distributions): the fraction of runs scoring above ``tau``, averaged
  over tasks, with pointwise stratified-bootstrap bands;
* time-to-threshold: the first step at which a learning curve reaches a score.

The statistics come from scipy; nothing here hand-rolls a resampling scheme. (The ``rliable``
package itself pulls ``arch``/``statsmodels``/``seaborn``/``pandas``, which we do not require.)

Score arrays are ``[runs, tasks]`` (``[runs]`` means one task). The multi-seed runner
:func:`run_seeds` trains a run config once per seed through :func:`policyopt.app.run.train`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a two-sided confidence interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high}


def _as_runs_tasks(scores) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"scores must be [runs] or [runs, tasks], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("scores contain nan or inf")
    return x


def iqm(scores) -> float:
    """Interquartile mean of all run scores (25% trimmed from each end)."""
    return float(stats.trim_mean(_as_runs_tasks(scores).ravel(), 0.25))


def _iqm_along(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    return stats.trim_mean(np.concatenate(samples, axis=axis), 0.25, axis=axis)


def _mean_along(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.concatenate(samples, axis=axis).mean(axis=axis)


def _median_along(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(np.concatenate(samples, axis=axis), axis=axis)


AGGREGATES: dict[str, Callable[..., np.ndarray]] = {"iqm": _iqm_along, "mean": _mean_along,
                                                    "median": _median_along}


def stratified_bootstrap(scores, statistic: Callable[..., np.ndarray] = _iqm_along, confidence: float = 0.95,
                         n_resamples: int = 2000, seed: int = 0) -> Estimate:
    """Point estimate and percentile CI of ``statistic(*per_task_runs, axis=-1)``, resampling runs
    within each task (stratified bootstrap). One run (or identical runs) gives a zero-width CI."""
    x = _as_runs_tasks(scores)
    samples = tuple(x[:, j] for j in range(x.shape[1]))
    point = float(statistic(*samples, axis=-1))
    if x.shape[0] < 2 or np.all(x == x[0]):
        return Estimate(point, point, point)
    res = stats.bootstrap(samples, statistic, n_resamples=n_resamples, confidence_level=confidence,
                          method="percentile", vectorized=True, paired=False, rng=np.random.default_rng(seed))
    return Estimate(point, float(res.confidence_interval.low), float(res.confidence_interval.high))


def aggregate(scores_by_algo: dict[str, Sequence], confidence: float = 0.95, n_resamples: int = 2000,
              seed: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """IQM, mean and median with stratified-bootstrap CIs for each algorithm's ``[runs, tasks]``."""
    return {algo: {name: stratified_bootstrap(s, fn, confidence, n_resamples, seed).as_dict()
                   for name, fn in AGGREGATES.items()}
            for algo, s in scores_by_algo.items()}


def probability_of_improvement(x, y, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> Estimate:
    """P(X > Y): the Mann-Whitney U statistic / (n m) (ties count 1/2), averaged over tasks,
    with a stratified-bootstrap CI (runs of X and of Y resampled independently)."""
    a, b = _as_runs_tasks(x), _as_runs_tasks(y)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y must have the same tasks, got {a.shape[1]} and {b.shape[1]}")
    k = a.shape[1]

    def stat(*samples, axis=-1):
        xs, ys = samples[:k], samples[k:]
        per = [stats.mannwhitneyu(u, v, axis=axis).statistic / (u.shape[axis] * v.shape[axis])
               for u, v in zip(xs, ys)]
        return np.mean(per, axis=0)

    samples = tuple(a[:, j] for j in range(k)) + tuple(b[:, j] for j in range(k))
    point = float(stat(*samples))
    if a.shape[0] < 2 or b.shape[0] < 2:
        return Estimate(point, point, point)
    res = stats.bootstrap(samples, stat, n_resamples=n_resamples, confidence_level=confidence,
                          method="percentile", vectorized=True, paired=False, rng=np.random.default_rng(seed))
    return Estimate(point, float(res.confidence_interval.low), float(res.confidence_interval.high))


def performance_profile(scores, taus: Sequence[float], confidence: float = 0.95, n_resamples: int = 1000,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run-score distribution ``P(score > tau)`` averaged over tasks, for each ``tau``:
    ``(values [T], ci_low [T], ci_high [T])`` with pointwise stratified-bootstrap bands."""
    taus = np.asarray(taus, dtype=np.float64)
    out = [stratified_bootstrap(scores, _fraction_above(t), confidence, n_resamples, seed) for t in taus]
    return (np.array([e.value for e in out]), np.array([e.low for e in out]), np.array([e.high for e in out]))


def _fraction_above(tau: float) -> Callable[..., np.ndarray]:
    def stat(*samples, axis=-1):
        return np.mean([(s > tau).mean(axis=axis) for s in samples], axis=0)
    return stat


def time_to_threshold(steps: Sequence[float], values: Sequence[float], threshold: float) -> float | None:
    """The first ``steps[i]`` with ``values[i] >= threshold``; None if never reached."""
    for s, v in zip(steps, values):
        if v >= threshold:
            return float(s)
    return None


# ----------------------------------------------------------------------------- runs and curves


def load_curve(run_dir: str | Path, key: str = "eval/return_mean") -> tuple[np.ndarray, np.ndarray]:
    """``(steps [T], values [T])`` of the records of ``metrics.jsonl`` that contain ``key``."""
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    pts = [(r["step"], r[key]) for r in rows if key in r]
    if not pts:
        raise ValueError(f"{run_dir}: no {key!r} in metrics.jsonl")
    steps, values = zip(*pts)
    return np.asarray(steps, np.float64), np.asarray(values, np.float64)


def align_curves(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Put several runs' curves on one step grid: ``(steps [T], values [runs, T])``. The grid is the
    union of evaluation steps; each run holds its last value after it stops (runs that stop early
    at a target score keep that score)."""
    grid = np.unique(np.concatenate([s for s, _ in curves]))
    out = np.empty((len(curves), len(grid)))
    for i, (s, v) in enumerate(curves):
        idx = np.searchsorted(s, grid, side="right") - 1
        out[i] = np.where(idx >= 0, v[np.clip(idx, 0, None)], np.nan)
    return grid, out


def curve_bands(values: np.ndarray, confidence: float = 0.95, n_resamples: int = 1000,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IQM across runs at each step of ``values [runs, T]`` with bootstrap CI bands ``[T]`` each
    (steps where a run has no value yet use the runs that have one)."""
    mid, low, high = (np.full(values.shape[1], np.nan) for _ in range(3))
    for t in range(values.shape[1]):
        col = values[:, t][np.isfinite(values[:, t])]
        if len(col):
            e = stratified_bootstrap(col, confidence=confidence, n_resamples=n_resamples, seed=seed)
            mid[t], low[t], high[t] = e.value, e.low, e.high
    return mid, low, high
