"""Natively vectorised environments registered with Gymnasium under the ``policyopt/`` namespace.

``gymnasium.make("policyopt/JobShop-v0")`` gives the single-env form; ``gymnasium.make_vec(
"policyopt/JobShop-v0", num_envs=N, vectorization_mode="vector_entry_point")`` the native batch.
See ``docs/envs.md`` for the list, and :mod:`policyopt.envs.core` for the framework.
"""

from __future__ import annotations

import gymnasium

from policyopt.envs.core import InvalidActionError, NativeVectorEnv, SingleEnv

# name -> (single-env entry point, native vector entry point); imported lazily by gymnasium
ENVS = {
    "JobShop": ("policyopt.envs.jobshop:make_single", "policyopt.envs.jobshop:JobShopVectorEnv"),
    "LotSizing": ("policyopt.envs.inventory:make_single", "policyopt.envs.inventory:LotSizingVectorEnv"),
    "Portfolio": ("policyopt.envs.portfolio:make_single", "policyopt.envs.portfolio:PortfolioVectorEnv"),
    "PortfolioESG": ("policyopt.envs.portfolio:make_single_esg", "policyopt.envs.portfolio:make_vector_esg"),
    "RestlessBandits": ("policyopt.envs.bandits:make_single", "policyopt.envs.bandits:RestlessBanditVectorEnv"),
    "Bidding": ("policyopt.envs.bidding:make_single", "policyopt.envs.bidding:BiddingVectorEnv"),
    "PathPlanning": ("policyopt.envs.pathplanning:make_single", "policyopt.envs.pathplanning:PathPlanningVectorEnv"),
}


# lifelong MAPF is multi-agent (PettingZoo ``policyopt.envs.mapf.LifelongMAPFEnv``); its Gymnasium id
# is vector-only: one world whose "copies" are its agents, for parameter-sharing PPO
MAPF_ID = "policyopt/MAPF-v0"


def _register_all() -> None:
    for name, (single, vector) in ENVS.items():
        env_id = f"policyopt/{name}-v0"
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=single, vector_entry_point=vector)
    if MAPF_ID not in gymnasium.registry:
        gymnasium.register(id=MAPF_ID, vector_entry_point="policyopt.envs.mapf:MAPFAgentsVectorEnv")


_register_all()

ENV_IDS = tuple(f"policyopt/{name}-v0" for name in ENVS)

__all__ = ["ENV_IDS", "MAPF_ID", "InvalidActionError", "NativeVectorEnv", "SingleEnv"]
