"""The algorithm registry: the name a run config uses (``algo: ppo``) -> what builds and trains it.

Entries are string references (``"module:attribute"``), resolved on first use, so reading the registry
(``policyopt list``, config validation) imports no algorithm and the classic side never loads the LM side.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


def resolve(ref: str, package: str) -> Any:
    """``"module:attr"`` inside ``package`` -> the attribute."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(f"{package}.{module}"), attr)


@dataclass(frozen=True)
class AlgoSpec:
    """A registered algorithm.

    ``config`` and ``algorithm`` name a config class and an algorithm class in ``policyopt.algos``;
    ``build`` names a builder in ``policyopt.app`` (``build(run_config, run_dir) -> (algorithm,
    collector, evaluator | None)``). ``data == "rollout"`` entries have no builder: ``policyopt.app.run``
    builds them with a :class:`~policyopt.runtime.collectors.RolloutCollector`; their constructor is
    ``cls(config, obs_dim, action_spec, total_updates, seed)``.
    """

    name: str
    config: str
    algorithm: str
    data: str
    summary: str
    build: str | None = None

    @property
    def config_cls(self) -> type:
        return resolve(self.config, "policyopt.algos")

    @property
    def cls(self) -> Any:
        return resolve(self.algorithm, "policyopt.algos")

    @property
    def builder(self) -> Any:
        return resolve(self.build, "policyopt.app") if self.build else None

    @property
    def uses_env(self) -> bool:
        """Whether a run of this algorithm has an ``env:`` section (classic RL) or not (LM runs)."""
        return self.data in ("rollout", "rollout+post_decision", "replay", "online")

    @property
    def sections(self) -> tuple[str, ...]:
        """Top-level run-config sections besides ``algo``, ``seed``, ``trainer`` and the algorithm's own:
        ``env`` for environment-based algorithms, ``model``/``data``/``reward`` for online LM RL, ``model``
        for the preference algorithms."""
        if self.uses_env:
            return ("env",)
        if self.data == "text":
            return ("model", "data", "reward")
        # the preference algorithms train a policy model; the reward model names its own backbone
        return ("model",) if self.name != "reward_model" else ()


REGISTRY: dict[str, AlgoSpec] = {
    "ppo": AlgoSpec(
        "ppo", "ppo:PPOConfig", "ppo:PPO", "rollout", "PPO: clipped surrogate + GAE (Schulman et al., 2017)"
    ),
    "a2c": AlgoSpec(
        "a2c", "a2c:A2CConfig", "a2c:A2C", "rollout", "A2C: n-step advantage actor-critic (Mnih et al., 2016)"
    ),
    "reinforce": AlgoSpec(
        "reinforce",
        "reinforce:ReinforceConfig",
        "reinforce:Reinforce",
        "rollout",
        "REINFORCE with a learned baseline (Williams, 1992)",
    ),
    "pdppo": AlgoSpec(
        "pdppo",
        "pdppo:PDPPOConfig",
        "pdppo:PDPPO",
        "rollout+post_decision",
        "PDPPO: PPO + post-decision-state critic, max advantage (Felizardo et al., 2024)",
        "build_classic:build_pdppo",
    ),
    "dqn": AlgoSpec(
        "dqn",
        "dqn:DQNConfig",
        "dqn:DQN",
        "replay",
        "DQN (+ double, dueling, n-step, prioritized replay, masks) (Mnih et al., 2015)",
        "build_classic:build_dqn",
    ),
    "sac": AlgoSpec(
        "sac",
        "sac:SACConfig",
        "sac:SAC",
        "replay",
        "SAC: twin critics, auto temperature, squashed Gaussian / discrete (Haarnoja et al., 2018)",
        "build_classic:build_sac",
    ),
    "sarsa": AlgoSpec(
        "sarsa",
        "sarsa:SARSAConfig",
        "sarsa:SARSA",
        "online",
        "SARSA / expected SARSA, tabular or Q-network (Rummery & Niranjan, 1994)",
        "build_classic:build_sarsa",
    ),
    "grpo": AlgoSpec(
        "grpo",
        "grpo:GRPOConfig",
        "grpo:GRPO",
        "text",
        "GRPO family: GRPO, Dr.GRPO, DAPO, GSPO, GRPO-D, reward shaping (Shao et al., 2024)",
        "build_lm:build_text_rl",
    ),
    "rloo": AlgoSpec(
        "rloo",
        "rloo:RLOOConfig",
        "rloo:RLOO",
        "text",
        "RLOO: REINFORCE with a leave-one-out baseline (Ahmadian et al., 2024)",
        "build_lm:build_text_rl",
    ),
    "remax": AlgoSpec(
        "remax",
        "remax:ReMaxConfig",
        "remax:ReMax",
        "text",
        "ReMax: REINFORCE with the greedy completion's reward as baseline (Li et al., 2024)",
        "build_lm:build_text_rl",
    ),
    "lm_reinforce": AlgoSpec(
        "lm_reinforce",
        "lm_reinforce:LMReinforceConfig",
        "lm_reinforce:LMReinforce",
        "text",
        "REINFORCE with a running-mean baseline for LMs (Williams, 1992)",
        "build_lm:build_text_rl",
    ),
    "lm_ppo": AlgoSpec(
        "lm_ppo",
        "lm_ppo:LMPPOConfig",
        "lm_ppo:LMPPO",
        "text",
        "PPO with a learned critic, token-level GAE, value clipping (Ouyang et al., 2022)",
        "build_lm:build_text_rl",
    ),
    "loop": AlgoSpec(
        "loop",
        "loop:LOOPConfig",
        "loop:LOOP",
        "text",
        "LOOP: PPO + leave-one-out advantages, no critic, multi-turn TextEnv (Chen et al., 2025)",
        "build_lm:build_text_rl",
    ),
    "dpo": AlgoSpec(
        "dpo",
        "dpo:DPOConfig",
        "dpo:DPO",
        "preference",
        "DPO family: DPO, cDPO, robust DPO, IPO, SLiC-HF (Rafailov et al., 2023)",
        "build_pref:build_dpo",
    ),
    "ipo": AlgoSpec(
        "ipo",
        "dpo:IPOConfig",
        "dpo:DPO",
        "preference",
        "IPO: squared preference loss (Azar et al., 2023)",
        "build_pref:build_dpo",
    ),
    "slic": AlgoSpec(
        "slic",
        "dpo:SLiCConfig",
        "dpo:DPO",
        "preference",
        "SLiC-HF: hinge calibration (Zhao et al., 2023)",
        "build_pref:build_dpo",
    ),
    "rrhf": AlgoSpec(
        "rrhf",
        "dpo:RRHFConfig",
        "dpo:DPO",
        "preference",
        "RRHF: ranking responses (Yuan et al., 2023)",
        "build_pref:build_dpo",
    ),
    "lipo": AlgoSpec(
        "lipo",
        "dpo:LiPOConfig",
        "dpo:DPO",
        "preference",
        "LiPO-lambda and listwise losses (Liu et al., 2024)",
        "build_pref:build_dpo",
    ),
    "online_dpo": AlgoSpec(
        "online_dpo",
        "online_pref:OnlinePrefConfig",
        "online_pref:OnlinePreference",
        "online_pref",
        "Online DPO / IPO on fresh pairs judged by an oracle or RM (Guo et al., 2024)",
        "build_pref:build_online_pref",
    ),
    "spo": AlgoSpec(
        "spo",
        "online_pref:SPOConfig",
        "online_pref:OnlinePreference",
        "online_pref",
        "SPO: self-play win-rate rewards (Swamy et al., 2024)",
        "build_pref:build_online_pref",
    ),
    "inpo": AlgoSpec(
        "inpo",
        "online_pref:INPOConfig",
        "online_pref:OnlinePreference",
        "online_pref",
        "INPO: iterative Nash policy optimization (Zhang et al., 2024)",
        "build_pref:build_online_pref",
    ),
    "egpo": AlgoSpec(
        "egpo",
        "online_pref:EGPOConfig",
        "online_pref:OnlinePreference",
        "online_pref",
        "EGPO: extragradient online IPO (Zhou et al., 2025)",
        "build_pref:build_online_pref",
    ),
    "mpo": AlgoSpec(
        "mpo",
        "mpo:MPOConfig",
        "mpo:MPO",
        "preference+text",
        "MPO: DPO on easy pairs, then online RL on hard ones with the DPO reference (Wang et al., 2024)",
        "build_pref:build_mpo",
    ),
    "reward_model": AlgoSpec(
        "reward_model",
        "reward_model:RewardModelRunConfig",
        "reward_model:RewardModelTrainer",
        "preference",
        "Bradley-Terry reward models, ensembles, preference strength (Ouyang et al., 2022; Wang et al., 2024)",
        "build_pref:build_reward_model",
    ),
}


__all__ = ["REGISTRY", "AlgoSpec", "resolve"]
