"""Algorithms: one file per family, each a frozen config plus ``update(batch) -> metrics``.

``REGISTRY`` maps the name used in run configs (``algo: ppo``) to its config class, its
constructor and the kind of data it learns from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from policyopt.algos import (
    dpo,
    dqn,
    grpo,
    lm_ppo,
    lm_reinforce,
    loop,
    mpo,
    online_pref,
    remax,
    reward_model,
    rloo,
    sac,
    sarsa,
)
from policyopt.algos.a2c import A2C, A2CConfig
from policyopt.algos.dqn import DQN, DQNConfig
from policyopt.algos.grpo import GRPOConfig, LMPolicyGradient
from policyopt.algos.lm_ppo import LMPPO, LMPPOConfig
from policyopt.algos.pdppo import PDPPO, PDPPOConfig
from policyopt.algos.pdppo import build as build_pdppo
from policyopt.algos.ppo import PPO, PPOConfig
from policyopt.algos.reinforce import Reinforce, ReinforceConfig
from policyopt.algos.sac import SAC, SACConfig
from policyopt.algos.sarsa import SARSA, SARSAConfig


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
    "pdppo": AlgoSpec("pdppo", PDPPOConfig, PDPPO, "rollout+post_decision",
                      "PDPPO: PPO + post-decision-state critic, max advantage (Felizardo et al., 2024)", build_pdppo),
    "dqn": AlgoSpec("dqn", DQNConfig, DQN, "replay",
                    "DQN (+ double, dueling, n-step, prioritized replay, masks) (Mnih et al., 2015)", dqn.build),
    "sac": AlgoSpec("sac", SACConfig, SAC, "replay",
                    "SAC: twin critics, auto temperature, squashed Gaussian / discrete (Haarnoja et al., 2018)",
                    sac.build),
    "sarsa": AlgoSpec("sarsa", SARSAConfig, SARSA, "online",
                      "SARSA / expected SARSA, tabular or Q-network (Rummery & Niranjan, 1994)", sarsa.build),
    # --- language-model RL (issue 4) ---
    "grpo": AlgoSpec("grpo", GRPOConfig, LMPolicyGradient, "text",
                     "GRPO family: GRPO, Dr.GRPO, DAPO, GSPO, GRPO-D, reward shaping (Shao et al., 2024)",
                     grpo.build),
    "rloo": AlgoSpec("rloo", rloo.RLOOConfig, LMPolicyGradient, "text",
                     "RLOO: REINFORCE with a leave-one-out baseline (Ahmadian et al., 2024)", rloo.build),
    "remax": AlgoSpec("remax", remax.ReMaxConfig, LMPolicyGradient, "text",
                      "ReMax: REINFORCE with the greedy completion's reward as baseline (Li et al., 2024)",
                      remax.build),
    "lm_reinforce": AlgoSpec("lm_reinforce", lm_reinforce.LMReinforceConfig, LMPolicyGradient, "text",
                             "REINFORCE with a running-mean baseline for LMs (Williams, 1992)", lm_reinforce.build),
    "lm_ppo": AlgoSpec("lm_ppo", LMPPOConfig, LMPPO, "text",
                       "PPO with a learned critic, token-level GAE, value clipping (Ouyang et al., 2022)",
                       lm_ppo.build),
    "loop": AlgoSpec("loop", loop.LOOPConfig, LMPolicyGradient, "text",
                     "LOOP: PPO + leave-one-out advantages, no critic, multi-turn TextEnv (Chen et al., 2025)",
                     loop.build),
    # --- end language-model RL ---
    # --- preference optimization (issue 5) ---
    "dpo": AlgoSpec("dpo", dpo.DPOConfig, dpo.OfflinePreference, "preference",
                    "DPO family: DPO, cDPO, robust DPO, IPO, SLiC-HF (Rafailov et al., 2023)", dpo.build),
    "ipo": AlgoSpec("ipo", dpo.IPOConfig, dpo.OfflinePreference, "preference",
                    "IPO: squared preference loss (Azar et al., 2023)", dpo.build),
    "slic": AlgoSpec("slic", dpo.SLiCConfig, dpo.OfflinePreference, "preference",
                     "SLiC-HF: hinge calibration (Zhao et al., 2023)", dpo.build),
    "rrhf": AlgoSpec("rrhf", dpo.RRHFConfig, dpo.OfflinePreference, "preference",
                     "RRHF: ranking responses (Yuan et al., 2023)", dpo.build),
    "lipo": AlgoSpec("lipo", dpo.LiPOConfig, dpo.OfflinePreference, "preference",
                     "LiPO-lambda and listwise losses (Liu et al., 2024)", dpo.build),
    "online_dpo": AlgoSpec("online_dpo", online_pref.OnlinePrefConfig, online_pref.OnlinePreference, "online_pref",
                           "Online DPO / IPO on fresh pairs judged by an oracle or RM (Guo et al., 2024)",
                           online_pref.build),
    "spo": AlgoSpec("spo", online_pref.SPOConfig, online_pref.OnlinePreference, "online_pref",
                    "SPO: self-play win-rate rewards (Swamy et al., 2024)", online_pref.build),
    "inpo": AlgoSpec("inpo", online_pref.INPOConfig, online_pref.OnlinePreference, "online_pref",
                     "INPO: iterative Nash policy optimization (Zhang et al., 2024)", online_pref.build),
    "egpo": AlgoSpec("egpo", online_pref.EGPOConfig, online_pref.OnlinePreference, "online_pref",
                     "EGPO: extragradient online IPO (Zhou et al., 2025)", online_pref.build),
    "mpo": AlgoSpec("mpo", mpo.MPOConfig, mpo.MPO, "preference+text",
                    "MPO: DPO on easy pairs, then online RL on hard ones with the DPO reference (Wang et al., 2024)",
                    mpo.build),
    "reward_model": AlgoSpec("reward_model", reward_model.RewardModelRunConfig, reward_model.RewardModelTrainer,
                             "preference", "Bradley-Terry reward models, ensembles, preference strength "
                             "(Ouyang et al., 2022; Wang et al., 2024)", reward_model.build),
    # --- end preference optimization ---
}

__all__ = ["A2C", "A2CConfig", "DQN", "DQNConfig", "PPO", "PPOConfig", "REGISTRY", "Reinforce", "ReinforceConfig",
           "SAC", "SACConfig", "SARSA", "SARSAConfig", "AlgoSpec"]
