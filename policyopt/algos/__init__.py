"""Algorithms: one file per family, each a frozen config plus ``update(batch) -> metrics``.

``REGISTRY`` maps the name used in run configs (``algo: ppo``) to its config class, its
constructor and the kind of data it learns from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from policyopt.algos import dqn
from policyopt.algos.a2c import A2C, A2CConfig
from policyopt.algos.dqn import DQN, DQNConfig
from policyopt.algos import grpo
from policyopt.algos.grpo import GRPOConfig, LMPolicyGradient
from policyopt.algos.ppo import PPO, PPOConfig
from policyopt.algos.reinforce import Reinforce, ReinforceConfig


@dataclass(frozen=True)
class AlgoSpec:
    """A registered algorithm.

    ``data == "rollout"``: an on-policy actor-critic built by ``policyopt.runtime.run`` with a
    :class:`~policyopt.runtime.collectors.RolloutCollector`; its constructor is
    ``cls(config, obs_dim, action_spec, total_updates, seed)`` and it exposes ``policy``.
    Any other kind supplies ``builder(run_config, run_dir) -> (algorithm, collector, evaluator | None)``.
    """

    name: str
    config_cls: type
    cls: Any
    data: str
    summary: str
    builder: Callable[..., tuple[Any, Any, Any]] | None = None


REGISTRY: dict[str, AlgoSpec] = {
    "ppo": AlgoSpec("ppo", PPOConfig, PPO, "rollout", "PPO: clipped surrogate + GAE (Schulman et al., 2017)"),
    "a2c": AlgoSpec("a2c", A2CConfig, A2C, "rollout", "A2C: n-step advantage actor-critic (Mnih et al., 2016)"),
    "reinforce": AlgoSpec("reinforce", ReinforceConfig, Reinforce, "rollout",
                          "REINFORCE with a learned baseline (Williams, 1992)"),
    "dqn": AlgoSpec("dqn", DQNConfig, DQN, "replay",
                    "DQN (+ double, dueling, n-step, prioritized replay, masks) (Mnih et al., 2015)", dqn.build),
    # --- language-model RL (issue 4) ---
    "grpo": AlgoSpec("grpo", GRPOConfig, LMPolicyGradient, "text",
                     "GRPO family: GRPO, Dr.GRPO, DAPO, GSPO, GRPO-D, reward shaping (Shao et al., 2024)",
                     grpo.build),
    # --- end language-model RL ---
}

__all__ = ["A2C", "A2CConfig", "DQN", "DQNConfig", "PPO", "PPOConfig", "REGISTRY", "Reinforce", "ReinforceConfig", "AlgoSpec"]
