"""Builds (algorithm, collector, evaluator) for the value-based algorithms from a run config: the
``builder`` of their :class:`~policyopt.algos.AlgoSpec` (ReplayCollector for DQN and SAC,
OnlineCollector for SARSA).

An off-policy algorithm is constructed as ``make(config, obs_dim, action_space, total_steps, seed)``
and exposes ``replay_spec() -> ReplaySpec``, ``explore`` / ``to_env_actions`` (the behaviour
policy, see :class:`~policyopt.runtime.replay_collector.Behaviour`) and ``policy`` (``act`` for
the evaluator). Its config has ``replay`` (a ReplayConfig), ``train_freq``, ``gradient_steps``,
``batch_size`` and ``learning_starts``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from policyopt.runtime.collectors import ObsAdapter
from policyopt.runtime.config import ConfigError
from policyopt.runtime.evaluate import EpisodeEvaluator
from policyopt.runtime.online_collector import OnlineCollector
from policyopt.runtime.replay_collector import ReplayCollector
from policyopt.runtime.seeding import derive_seed


def _env_and_algo(cfg: Any, make: Callable[..., Any], *extra: str) -> tuple[Any, Any]:
    from policyopt.runtime.run import make_seeded_env

    if cfg.env.normalize_obs or cfg.env.normalize_reward:
        raise ConfigError(f"env.normalize_obs / env.normalize_reward: not supported by {cfg.algo} (value-based "
                          "learners would need normalisers frozen per replayed sample); set them to false")
    env = make_seeded_env(cfg)
    try:
        obs_dim = ObsAdapter(env.single_observation_space).dim
        kwargs = {"observation_space": env.single_observation_space} if "observation_space" in extra else {}
        algo = make(cfg.algo_config, obs_dim, env.single_action_space, cfg.trainer.total_steps,
                    derive_seed(cfg.seed, "policy"), **kwargs)
    except ValueError as err:
        env.close()
        raise ConfigError(f"env.id: {cfg.env.id!r} cannot be trained with {cfg.algo}: {err}") from None
    return env, algo


def _evaluator(cfg: Any, algo: Any) -> EpisodeEvaluator:
    from policyopt.runtime.run import make_env

    return EpisodeEvaluator(lambda n: make_env(cfg.env, n), algo.policy, cfg.trainer.eval_episodes,
                            derive_seed(cfg.seed, "eval"))


def build_offpolicy(cfg: Any, run_dir: Path, make: Callable[..., Any]) -> tuple[Any, ReplayCollector, EpisodeEvaluator]:
    """(algorithm, ReplayCollector, evaluator) for a replay-based algorithm (DQN, SAC)."""
    env, algo = _env_and_algo(cfg, make)
    a = cfg.algo_config
    collector = ReplayCollector(env, algo, algo.replay_spec(), train_freq=a.train_freq,
                                gradient_steps=a.gradient_steps, batch_size=a.batch_size,
                                learning_starts=a.learning_starts, seed=derive_seed(cfg.seed, "env"),
                                generator_seed=derive_seed(cfg.seed, "actions"),
                                replay_seed=derive_seed(cfg.seed, "replay"), save_replay=a.replay.save_replay)
    return algo, collector, _evaluator(cfg, algo)


def build_online(cfg: Any, run_dir: Path, make: Callable[..., Any]) -> tuple[Any, OnlineCollector, EpisodeEvaluator]:
    """(algorithm, OnlineCollector, evaluator) for on-policy TD control (SARSA); ``make`` also gets
    ``observation_space`` (tabular methods need the number of states)."""
    env, algo = _env_and_algo(cfg, make, "observation_space")
    collector = OnlineCollector(env, algo, train_freq=cfg.algo_config.train_freq, seed=derive_seed(cfg.seed, "env"),
                                generator_seed=derive_seed(cfg.seed, "actions"))
    return algo, collector, _evaluator(cfg, algo)
