"""Algorithms: one file per family, each a frozen config plus ``update(batch) -> metrics``.

This package imports nothing on purpose: ``import policyopt.algos.ppo`` loads PPO and what it needs,
never the LM side. The name -> algorithm table is ``policyopt.app.registry.REGISTRY``.
"""
