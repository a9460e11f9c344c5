"""Every online LM RL method trains end to end and improves held-out accuracy (seeds 0-2, 2 of 3).

The model is a tiny Llama SFT'd briefly on small sorting problems (``lm_helpers``): its held-out
greedy accuracy starts at 0.40. Each method runs 20 updates of 8 prompts x 8 completions through the
shared Trainer and must raise held-out greedy accuracy by at least 0.1 (absolute) on prompts it
never trained on; the last record also carries every metric name the issue fixes.

Pass rule: seeds 0, 1, 2 run in order until the verdict is known; at least 2 of 3 must gain 0.1.
A single seed's gain moves with the CPU's float rounding (ReMax gained 0.05 on seed 0 on one AMD
EPYC while it gains >= 0.1 on the machine the threshold was set on).
"""

from __future__ import annotations

import math

import pytest

from policyopt.app.run import build_trainer, parse_run_config
from tests.algos.lm_helpers import cached_tiny_model, run_config
from tests.multiseed import at_least

METHODS = {
    "grpo": ("grpo", {"learning_rate": 1e-4}),
    "drgrpo": ("grpo", {"learning_rate": 1e-4, "scale_by_std": False, "aggregation": "fixed_length"}),
    "dapo": ("grpo", {"learning_rate": 1e-4, "clip_high": 0.28, "aggregation": "token_mean", "overlong": "soft",
                      "collect": {"dynamic_sampling": True}, "epochs": 1, "minibatches": 2}),
    "gspo": ("grpo", {"learning_rate": 1e-4, "ratio_level": "sequence", "clip_low": 3e-3, "clip_high": 4e-3,
                      "minibatches": 2}),
    "grpo_d": ("grpo", {"learning_rate": 1e-4, "kl_coef": 0.05, "kl_schedule": "dynamic", "kl_coef_min": 0.0}),
    "rloo": ("rloo", {"learning_rate": 1e-4}),
    "remax": ("remax", {"learning_rate": 1e-4}),
    "lm_reinforce": ("lm_reinforce", {"learning_rate": 1e-4}),
    "lm_ppo": ("lm_ppo", {"learning_rate": 1e-4}),
    "loop": ("loop", {"learning_rate": 1e-4}),
}

FIXED_METRICS = ("reward/mean", "reward/std", "reward/correct", "reward/unscorable_frac", "stats/tied_group_frac",
                 "stats/clip_frac", "stats/entropy", "lm/completion_len_mean", "time/samples_per_s",
                 "time/tokens_per_s", "mem/peak_rss_mb")


@pytest.fixture(scope="module")
def model_dir():
    return cached_tiny_model()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_improves_held_out_accuracy(method, model_dir, tmp_path):
    algo, section = METHODS[method]

    def train_one(seed: int) -> dict:
        cfg = parse_run_config(run_config(algo, model_dir, section, steps=20, seed=seed))
        trainer = build_trainer(cfg, tmp_path / f"{method}-s{seed}")
        before = trainer.evaluator.evaluate()
        record = trainer.run()
        assert trainer.step == 20 * 64 or (method == "dapo" and trainer.step >= 20 * 64)
        for name in FIXED_METRICS:
            assert name in record and math.isfinite(record[name]), name
        if method != "loop":  # LOOP keeps one model copy: no reference, no KL to it
            assert math.isfinite(record["stats/kl_ref"]) and record["stats/kl_ref"] > 0
        return {"before": before["eval/accuracy/all"], "after": record["eval/accuracy/all"]}

    at_least(2, range(3), train_one, lambda r: r["after"] - r["before"] >= 0.1,
             f"{method} held-out accuracy gain >= 0.1")


def test_grpo_improves_the_shipped_builtin_model(tmp_path):
    """The demo config, shortened to 25 updates: held-out accuracy of the built-in model on 200 unseen
    sorting prompts goes from 0.445 to about 0.56 (measured); assert at least +0.05."""
    from pathlib import Path

    from policyopt.core.config import apply_overrides, load_yaml

    config = Path(__file__).resolve().parents[2] / "configs" / "grpo_demo.yaml"
    data = apply_overrides(load_yaml(config), ["trainer.total_steps=1600", "trainer.progress=none"])
    trainer = build_trainer(parse_run_config(data), tmp_path)
    before = trainer.evaluator.evaluate()["eval/accuracy/all"]
    after = trainer.run()["eval/accuracy/all"]
    assert after >= before + 0.05, (before, after)
