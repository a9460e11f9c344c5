"""policyopt: reinforcement-learning policy optimization, from vectorised environments to language models.

The public API is small and flat::

    from policyopt import PPO, A2C, DQN, SAC, GRPO, RLOO, ReMax, DPO, SFT, RewardModel, Trainer, make_env, train
    run_dir, last = train("configs/ppo_cartpole.yaml", ["ppo.learning_rate=1e-3"])

Names are imported lazily so that ``import policyopt`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # classic RL
    "PPO": "policyopt.algos.ppo", "PPOConfig": "policyopt.algos.ppo",
    "A2C": "policyopt.algos.a2c", "A2CConfig": "policyopt.algos.a2c",
    "Reinforce": "policyopt.algos.reinforce", "ReinforceConfig": "policyopt.algos.reinforce",
    "PDPPO": "policyopt.algos.pdppo", "PDPPOConfig": "policyopt.algos.pdppo",
    "DQN": "policyopt.algos.dqn", "DQNConfig": "policyopt.algos.dqn",
    "SAC": "policyopt.algos.sac", "SACConfig": "policyopt.algos.sac",
    "SARSA": "policyopt.algos.sarsa", "SARSAConfig": "policyopt.algos.sarsa",
    # language-model RL
    "GRPO": "policyopt.algos.grpo", "GRPOConfig": "policyopt.algos.grpo",
    "RLOO": "policyopt.algos.rloo", "RLOOConfig": "policyopt.algos.rloo",
    "ReMax": "policyopt.algos.remax", "ReMaxConfig": "policyopt.algos.remax",
    "LMReinforce": "policyopt.algos.lm_reinforce", "LMReinforceConfig": "policyopt.algos.lm_reinforce",
    "LMPPO": "policyopt.algos.lm_ppo", "LMPPOConfig": "policyopt.algos.lm_ppo",
    "LOOP": "policyopt.algos.loop", "LOOPConfig": "policyopt.algos.loop",
    "SFT": "policyopt.algos.sft", "SFTConfig": "policyopt.algos.sft",
    # preference optimisation and reward models
    "DPO": "policyopt.algos.dpo", "DPOConfig": "policyopt.algos.dpo",
    "OnlinePreference": "policyopt.algos.online_pref", "OnlinePrefConfig": "policyopt.algos.online_pref",
    "MPO": "policyopt.algos.mpo", "MPOConfig": "policyopt.algos.mpo",
    "RewardModel": "policyopt.algos.reward_model", "RewardModelConfig": "policyopt.algos.reward_model",
    "RewardModelTrainer": "policyopt.algos.reward_model",
    # the loop, collectors, runs
    "Trainer": "policyopt.runtime.trainer", "TrainerConfig": "policyopt.runtime.trainer",
    "RolloutCollector": "policyopt.runtime.collectors", "TextCollector": "policyopt.runtime.text_collector",
    "train": "policyopt.app.run", "resume": "policyopt.app.run", "evaluate_run": "policyopt.app.run",
    "make_env": "policyopt.app.build_classic", "EnvConfig": "policyopt.app.build_classic",
    "REGISTRY": "policyopt.app.registry",
    "ConfigError": "policyopt.core.config", "CheckpointError": "policyopt.runtime.checkpoint",
}

__all__ = sorted(_EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'policyopt' has no attribute {name!r}")
