"""Natively vectorised environments registered with Gymnasium under the ``policyopt/`` namespace.

``gymnasium.make("policyopt/JobShop-v0")`` gives the single-env form; ``gymnasium.make_vec(
"policyopt/JobShop-v0", num_envs=N, vectorization_mode="vector_entry_point")`` the native batch.
See ``docs/envs.md`` for the list, and :mod:`policyopt.envs.core` for the framework.
"""

from __future__ import annotations

import gymnasium

from policyopt.envs.core import InvalidActionError, NativeVectorEnv, SingleEnv

# name -> module (each module defines ``<Name>VectorEnv`` and ``make_single``)
ENVS = {
    "JobShop": ("policyopt.envs.jobshop", "JobShopVectorEnv"),
}


def _register_all() -> None:
    for name, (module, cls) in ENVS.items():
        env_id = f"policyopt/{name}-v0"
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(id=env_id, entry_point=f"{module}:make_single",
                           vector_entry_point=f"{module}:{cls}", disable_env_checker=False)


_register_all()

ENV_IDS = tuple(f"policyopt/{name}-v0" for name in ENVS)

__all__ = ["ENV_IDS", "InvalidActionError", "NativeVectorEnv", "SingleEnv"]
