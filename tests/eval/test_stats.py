"""Evaluation statistics: hand-checked IQM / profiles, stratified bootstrap behaviour, reports."""

import json

import numpy as np
import pytest

from policyopt.app import report
from policyopt.app.experiments import run_seeds
from policyopt.eval import stats


def test_iqm_hand_computed():
    assert stats.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)
    assert stats.iqm([[1, 100], [2, 200], [3, 300], [4, 400]]) == pytest.approx((3 + 4 + 100 + 200) / 4)
    with pytest.raises(ValueError, match="nan"):
        stats.iqm([1.0, float("nan")])


def test_bootstrap_is_stratified_over_tasks():
    # task 0 scores ~0, task 1 scores ~100. Resampling within tasks keeps half the scores near 100,
    # so the CI of the mean is narrow; pooling the tasks would make it ~+-15 wide.
    rng = np.random.default_rng(0)
    scores = np.stack([rng.uniform(0, 1, 10), 100 + rng.uniform(0, 1, 10)], axis=1)
    e = stats.stratified_bootstrap(scores, stats.AGGREGATES["mean"])
    assert e.low <= e.value <= e.high
    assert e.high - e.low < 1.0


def test_bootstrap_ci_covers_the_truth_and_shrinks_with_more_seeds():
    rng = np.random.default_rng(1)
    small = stats.stratified_bootstrap(rng.normal(10, 2, 5))
    large = stats.stratified_bootstrap(rng.normal(10, 2, 100))
    assert large.low < 10 < large.high
    assert (large.high - large.low) < (small.high - small.low)
    single = stats.stratified_bootstrap([3.0])
    assert (single.value, single.low, single.high) == (3.0, 3.0, 3.0)


def test_performance_profile_and_probability_of_improvement():
    mid, low, high = stats.performance_profile([1.0, 2.0, 3.0, 4.0], [0.0, 2.5, 5.0], n_resamples=200)
    np.testing.assert_allclose(mid, [1.0, 0.5, 0.0])
    assert np.all(low <= mid) and np.all(mid <= high)
    assert stats.probability_of_improvement([5, 6, 7], [1, 2, 3]).value == 1.0
    assert stats.probability_of_improvement([1, 2, 3], [1, 2, 3]).value == pytest.approx(0.5)


def test_time_to_threshold_and_curve_alignment():
    assert stats.time_to_threshold([10, 20, 30], [1, 5, 9], 5) == 20.0
    assert stats.time_to_threshold([10, 20], [1, 2], 5) is None
    steps, values = stats.align_curves([(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0])),
                                        (np.array([1.0, 2.0]), np.array([5.0, 7.0]))])   # stopped early
    np.testing.assert_array_equal(steps, [1, 2, 3])
    np.testing.assert_array_equal(values, [[0, 1, 2], [5, 7, 7]])


def fake_run(path, values, steps=(100, 200, 300)):
    path.mkdir(parents=True)
    rows = [{"step": s, "eval/return_mean": v} for s, v in zip(steps, values)]
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_write_report(tmp_path):
    runs = {"a": [fake_run(tmp_path / f"a{i}", [0, 10 + i, 20 + i]) for i in range(4)],
            "b": [fake_run(tmp_path / f"b{i}", [0, 30 + i, 40 + i]) for i in range(4)]}
    md = report.write_report("toy", runs, tmp_path / "out", threshold=25.0)
    text = md.read_text()
    assert "| a | 21.50 [" in text and "| b | 41.50 [" in text     # IQM of 20..23 and 40..43
    assert "P(b > a) = 1.00" in text
    assert "| a | 0/4 | - |" in text and "| b | 4/4 | 200 |" in text
    assert (tmp_path / "out" / "curves.png").stat().st_size > 1000
    assert (tmp_path / "out" / "profile.png").stat().st_size > 1000


def test_run_seeds_trains_each_seed_once(tmp_path):
    cfg = {"algo": "dqn", "env": {"id": "CartPole-v1", "num_envs": 2},
           "dqn": {"learning_starts": 32, "hidden_sizes": [8], "batch_size": 8},
           "trainer": {"total_steps": 64, "eval_every_steps": 32, "eval_episodes": 2, "tensorboard": False}}
    dirs = run_seeds(cfg, [0, 1], tmp_path, tag="dqn")
    assert [d.name for d in dirs] == ["dqn_s0", "dqn_s1"]
    steps, values = stats.load_curve(dirs[0])
    assert steps.tolist() == [32, 64] and len(values) == 2
    mtime = (dirs[0] / "metrics.jsonl").stat().st_mtime
    run_seeds(cfg, [0], tmp_path, tag="dqn")                # reused, not retrained
    assert (dirs[0] / "metrics.jsonl").stat().st_mtime == mtime
