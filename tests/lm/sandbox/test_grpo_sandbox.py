"""GRPO end to end with the sandboxed unit-test reward: the built-in model writes code, the code runs
in bubblewrap, the pass fraction is the reward, and the policy is updated through the shared Trainer."""

import math

import pytest

from policyopt.core.config import build
from policyopt.runtime.metrics_log import MetricsLog
from policyopt.runtime.trainer import Trainer, TrainerConfig

pytest.importorskip("transformers")


def test_grpo_with_sandboxed_unit_test_reward_runs_end_to_end(tmp_path):
    from policyopt.algos.grpo import GRPO, GRPOConfig
    from policyopt.lm.builtin import load_builtin
    from policyopt.lm.code_rewards import build_code_reward, coding_tasks
    from policyopt.lm.policy import LMPolicy
    from policyopt.lm.reward import RewardGuard
    from policyopt.runtime.text_collector import TextCollector

    model, tokenizer = load_builtin()
    policy = LMPolicy(model, tokenizer)
    reward = build_code_reward({"kind": "unit_tests", "workers": 2})
    guard = RewardGuard(reward)
    config = build(GRPOConfig, {"learning_rate": 1e-4, "kl_coef": 0.0,
                                "collect": {"prompts_per_step": 2, "completions_per_prompt": 4,
                                            "max_new_tokens": 24}}, "grpo")
    algo = GRPO(config, policy, total_updates=2, seed=0)
    collector = TextCollector(policy, coding_tasks(16), guard, config.collect, seed=0)
    trainer = Trainer(algo, collector, TrainerConfig(total_steps=16, eval_every_steps=0, progress="none",
                                                     tensorboard=False), tmp_path / "run")
    before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    trainer.run()
    records = MetricsLog.read(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [8, 16]
    for r in records:
        assert 0.0 <= r["reward/unscorable_frac"] <= 1.0
        assert math.isfinite(r["loss/policy"])
    # every completion went through the sandbox and got a verdict (none was an infrastructure error)
    verdicts = [v.name for rep in reward.last_reports if rep is not None for v in rep.verdicts]
    assert len(verdicts) == 8 * 4 and "SANDBOX_ERROR" not in verdicts   # 8 completions x 4 tests
    assert reward.last_metrics and all(v >= 0.0 for v in reward.last_metrics.values())
    verdict_keys = [k for k in reward.last_metrics if k != "reward/unscorable_frac"]
    assert all(k in records[-1] for k in verdict_keys)   # per-verdict fractions are logged every step
    changed = any(not (before[k] == v).all() for k, v in policy.model.state_dict().items())
    assert changed or all(r["reward/std"] == 0 for r in records)
