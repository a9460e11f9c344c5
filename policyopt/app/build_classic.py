"""Classic-RL construction: environments (``EnvConfig``, ``make_env``) and the registry builders of the
algorithms that need more than the plain rollout path (PDPPO; ReplayCollector for DQN and SAC,
OnlineCollector for SARSA), each returning (algorithm, collector, evaluator).

An off-policy algorithm is constructed as ``make(config, obs_dim, action_space, total_steps, seed)``
and exposes ``replay_spec() -> ReplaySpec``, ``explore`` / ``to_env_actions`` (the behaviour
policy, see :class:`~policyopt.runtime.replay_collector.Behaviour`) and ``policy`` (``act`` for
the evaluator). Its config has ``replay`` (a ReplayConfig), ``train_freq``, ``gradient_steps``,
``batch_size`` and ``learning_starts``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from pydantic import Field

from policyopt.core.config import ConfigError, build, configclass
from policyopt.core.seeding import derive_seed
from policyopt.nets.actor_critic import ActionSpec
from policyopt.runtime.collectors import ObsAdapter, RolloutCollector
from policyopt.runtime.evaluate import EpisodeEvaluator
from policyopt.runtime.online_collector import OnlineCollector
from policyopt.runtime.replay_collector import ReplayCollector


def _env_and_algo(cfg: Any, make: Callable[..., Any], *extra: str) -> tuple[Any, Any]:

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


@configclass
class EnvConfig:
    id: str = "CartPole-v1"
    """Any Gymnasium environment id (policyopt's own are registered as ``policyopt/...``)."""
    num_envs: Annotated[int, Field(gt=0)] = 8
    """Parallel copies of the environment."""
    vectorization: Literal["sync", "async", "vector_entry_point"] = "sync"
    """``gymnasium.make_vec`` mode: ``vector_entry_point`` uses a natively batched env."""
    autoreset: Literal["next_step", "same_step"] = "next_step"
    """Gymnasium autoreset mode for sync/async vectorisation (native envs declare their own)."""
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Extra keyword arguments for the environment constructor."""
    normalize_obs: bool = False
    """Normalise observations with running statistics (saved in checkpoints)."""
    normalize_reward: bool = False
    """Scale rewards by the running std of the discounted return."""
    clip_obs: Annotated[float, Field(gt=0)] = 10.0
    """Clip normalised observations to [-clip_obs, clip_obs]."""


def make_env(env: EnvConfig | str, num_envs: int | None = None, **fields: Any) -> gym.vector.VectorEnv:
    """``gymnasium.make_vec`` with clear errors for unknown ids and unsupported modes.

    ``make_env("CartPole-v1", 8, vectorization="vector_entry_point")`` or ``make_env(EnvConfig(...))``.
    """
    import policyopt.envs  # noqa: F401  (registers policyopt/... environments)

    if isinstance(env, str):
        env = build(EnvConfig, {"id": env, **fields}, "env")
    num_envs = env.num_envs if num_envs is None else num_envs

    vector_kwargs = None
    if env.vectorization != "vector_entry_point":
        modes = gym.vector.AutoresetMode
        vector_kwargs = {"autoreset_mode": modes.SAME_STEP if env.autoreset == "same_step" else modes.NEXT_STEP}
    try:
        return gym.make_vec(env.id, num_envs=num_envs, vectorization_mode=env.vectorization,
                            vector_kwargs=vector_kwargs, **env.kwargs)
    except gym.error.Error as err:
        raise ConfigError(f"env.id: cannot make {env.id!r} with vectorization={env.vectorization!r}: {err}") from None
    except TypeError as err:
        raise ConfigError(f"env.kwargs: {env.id!r} rejected the keyword arguments {env.kwargs}: {err}") from None


def make_seeded_env(cfg: Any) -> gym.vector.VectorEnv:
    """The training env of a run config (``policyopt.app.run.RunConfig``), every space's RNG seeded from
    the run seed (spaces are part of the checkpointed env state, so unseeded ones would make two
    same-seed runs differ)."""
    env = make_env(cfg.env, cfg.env.num_envs)
    for name in ("action_space", "observation_space", "single_action_space", "single_observation_space"):
        getattr(env, name).seed(derive_seed(cfg.seed, name))
    return env


def build_dqn(cfg, run_dir):
    """AlgoSpec builder: (DQN, ReplayCollector, evaluator) from a run config."""
    from policyopt.algos.dqn import DQN

    return build_offpolicy(cfg, run_dir, DQN)


def build_sac(cfg, run_dir):
    """AlgoSpec builder: (SAC, ReplayCollector, evaluator) from a run config."""
    from policyopt.algos.sac import SAC

    return build_offpolicy(cfg, run_dir, SAC)


def build_sarsa(cfg, run_dir):
    """AlgoSpec builder: (SARSA, OnlineCollector, evaluator) from a run config."""
    from policyopt.algos.sarsa import SARSA

    def make(config, obs_dim, action_space, total_steps, seed, observation_space):
        states = int(observation_space.n) if isinstance(observation_space, spaces.Discrete) else None
        return SARSA(config, obs_dim, action_space, total_steps, seed, states)

    return build_online(cfg, run_dir, make)


def build_pdppo(cfg, run_dir):
    """AlgoSpec builder: the rollout path of :func:`policyopt.app.run.build_trainer`, with the
    collector storing ``info[post_decision_key]`` per step."""
    from policyopt.algos.pdppo import PDPPO

    acfg, key = cfg.algo_config, cfg.algo_config.post_decision_key
    env = make_seeded_env(cfg)
    try:
        adapter = ObsAdapter(env.single_observation_space)
        spec = ActionSpec.from_space(env.single_action_space)
    except ValueError as err:
        env.close()
        raise ConfigError(f"env.id: {cfg.env.id!r} cannot be trained with pdppo: {err}") from None
    _, info = env.reset(seed=derive_seed(cfg.seed, "env"))   # the collector resets again with this seed
    if key not in info:
        env.close()
        raise ConfigError(f"pdppo.post_decision_key: {cfg.env.id!r} puts no {key!r} in its info (keys: "
                          f"{sorted(k for k in info if not k.startswith('_'))}); PDPPO needs an environment "
                          "that exposes its post-decision state")
    post_dim = int(np.asarray(info[key]).reshape(cfg.env.num_envs, -1).shape[1])
    total_updates = -(-cfg.trainer.total_steps // (acfg.num_steps * cfg.env.num_envs))
    algo = PDPPO(acfg, adapter.dim, spec, total_updates, derive_seed(cfg.seed, "policy"), post_dim)
    collector = RolloutCollector(env, algo.policy, acfg.num_steps, derive_seed(cfg.seed, "env"),
                                 derive_seed(cfg.seed, "actions"), cfg.env.normalize_obs, cfg.env.normalize_reward,
                                 acfg.gamma, cfg.env.clip_obs, extra_obs_key=key)
    evaluator = EpisodeEvaluator(lambda n: make_env(cfg.env, n), algo.policy, cfg.trainer.eval_episodes,
                                 derive_seed(cfg.seed, "eval"), collector.normalize_eval_obs)
    return algo, collector, evaluator
