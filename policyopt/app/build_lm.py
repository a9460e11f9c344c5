"""Language-model RL construction: model, prompt pools, reward, ``TextCollector`` and held-out
evaluator of an online LM run, from its run config."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from policyopt.algos.grpo import GRPO
from policyopt.lm.source import TextEvaluator, build_source
from policyopt.runtime.text_collector import TextCollector


def build_parts(run_config: Any, cls: type = GRPO, **algo_kwargs: Any):
    """``(algorithm, collector, evaluator)`` of an LM run config (used by every LM RL algorithm)."""
    from policyopt.core.seeding import derive_seed

    cfg, seed = run_config.algo_config, run_config.seed
    cc = cfg.collect
    source = build_source(cfg.source, max_turns=cc.max_turns)
    per_update = cc.prompts_per_step * cc.completions_per_prompt
    total_updates = -(-run_config.trainer.total_steps // per_update)
    algo = cls(cfg, source.policy, total_updates, derive_seed(seed, "minibatches"), **algo_kwargs)
    collector = TextCollector(source.policy, source.train, source.reward, cc, derive_seed(seed, "sampler"),
                              env_factory=source.env_factory, greedy_baseline=cfg.advantage == "remax")
    evaluator = TextEvaluator(source.policy, source.eval, source.reward.fn, max_new_tokens=cc.max_new_tokens,
                              temperature=cc.temperature, samples=cfg.source.eval_samples,
                              seed=derive_seed(seed, "eval"), env_factory=source.env_factory,
                              max_turns=cc.max_turns)
    return algo, collector, evaluator


def build_text_rl(run_config: Any, run_dir: Path) -> tuple[Any, Any, Any]:
    """Registry builder of every online LM RL algorithm (GRPO, RLOO, ReMax, LMReinforce, LM-PPO, LOOP):
    the algorithm class is the registry's; LOOP always plays the calculator text environment."""
    from policyopt.app.registry import REGISTRY

    cls = REGISTRY[run_config.algo].cls
    cfg = run_config.algo_config
    if getattr(cls, "text_env", None) and cfg.source.env == "none":
        cfg = dataclasses.replace(cfg, source=dataclasses.replace(cfg.source, env=cls.text_env))
        run_config = dataclasses.replace(run_config, algo_config=cfg)
    return build_parts(run_config, cls)
