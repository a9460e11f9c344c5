"""policyopt: reinforcement-learning policy optimization, from vectorised environments to language models.

The public API is small and flat::

    from policyopt import PPO, Trainer, make_env, train
    run_dir, last = train("configs/ppo_cartpole.yaml", ["ppo.learning_rate=1e-3"])

Names are imported lazily so that ``import policyopt`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "PPO": "policyopt.algos.ppo", "PPOConfig": "policyopt.algos.ppo",
    "A2C": "policyopt.algos.a2c", "A2CConfig": "policyopt.algos.a2c",
    "Reinforce": "policyopt.algos.reinforce", "ReinforceConfig": "policyopt.algos.reinforce",
    "Trainer": "policyopt.runtime.trainer", "TrainerConfig": "policyopt.runtime.trainer",
    "RolloutCollector": "policyopt.runtime.collectors",
    "train": "policyopt.runtime.run", "resume": "policyopt.runtime.run", "evaluate_run": "policyopt.runtime.run",
    "make_env": "policyopt.runtime.run", "EnvConfig": "policyopt.runtime.run",
    "ConfigError": "policyopt.runtime.config", "CheckpointError": "policyopt.runtime.checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'policyopt' has no attribute {name!r}")
