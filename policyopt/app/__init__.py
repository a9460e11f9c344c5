"""The composition root: the algorithm registry, every builder (envs, models, data, rewards,
collectors, evaluators), run orchestration (train / resume / evaluate), multi-seed experiments and demos.

Nothing below ``app`` imports it; it is the only place that knows every concrete piece.
"""
