"""From a run config (YAML) to a running trainer: ``train``, ``resume`` and ``evaluate_run``.

A run directory holds ``config.yaml`` (the resolved config), ``metrics.jsonl``, ``tb/`` and
``checkpoints/``. Resume continues counters, schedules, RNGs, env state and normalisers exactly;
changing the batch geometry on resume is refused unless forced. Starting a *new* run from the
weights of another is a separate, explicit action (``init_from``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from policyopt.app.build_classic import EnvConfig, make_env, make_seeded_env
from policyopt.app.registry import REGISTRY
from policyopt.core.config import ConfigError, apply_overrides, build, dump_yaml, load_yaml, to_dict
from policyopt.core.seeding import derive_seed, seed_everything
from policyopt.nets.actor_critic import ActionSpec
from policyopt.runtime import checkpoint as ckpt
from policyopt.runtime.collectors import ObsAdapter, RolloutCollector
from policyopt.runtime.evaluate import EpisodeEvaluator
from policyopt.runtime.trainer import Trainer, TrainerConfig


@dataclass(frozen=True)
class RunConfig:
    algo: str
    seed: int
    env: EnvConfig
    trainer: TrainerConfig
    algo_config: Any


TOP_KEYS = ("algo", "seed", "env", "trainer")


def parse_run_config(data: dict[str, Any]) -> RunConfig:
    """Validate a run-config mapping; every problem names its key."""
    name = data.get("algo")
    if name not in REGISTRY:
        raise ConfigError(f"algo: unknown algorithm {name!r}; choose one of {sorted(REGISTRY)}")
    extra = set(data) - set(TOP_KEYS) - {name}
    if extra:
        raise ConfigError(f"{sorted(extra)[0]}: unknown key (top-level keys are {list(TOP_KEYS)} and {name!r})")
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer (got {seed!r})")
    return RunConfig(name, seed, build(EnvConfig, data.get("env"), "env"),
                     build(TrainerConfig, data.get("trainer"), "trainer"),
                     build(REGISTRY[name].config_cls, data.get(name), name))


def run_config_dict(cfg: RunConfig) -> dict[str, Any]:
    return {"algo": cfg.algo, "seed": cfg.seed, "env": to_dict(cfg.env), "trainer": to_dict(cfg.trainer),
            cfg.algo: to_dict(cfg.algo_config)}


def build_trainer(cfg: RunConfig, run_dir: Path) -> Trainer:
    torch.set_num_threads(cfg.trainer.torch_threads)
    seed_everything(derive_seed(cfg.seed, "global"))
    spec_entry = REGISTRY[cfg.algo]
    if spec_entry.builder is not None:
        algo, collector, evaluator = spec_entry.builder(cfg, run_dir)
        return Trainer(algo, collector, cfg.trainer, run_dir, evaluator)
    env = make_seeded_env(cfg)
    try:
        adapter = ObsAdapter(env.single_observation_space)
        action_spec = ActionSpec.from_space(env.single_action_space)
    except ValueError as err:
        env.close()
        raise ConfigError(f"env.id: {cfg.env.id!r} cannot be trained with {cfg.algo}: {err}") from None
    acfg = cfg.algo_config
    per_update = acfg.num_steps * cfg.env.num_envs
    total_updates = -(-cfg.trainer.total_steps // per_update)
    algo = spec_entry.cls(acfg, adapter.dim, action_spec, total_updates, derive_seed(cfg.seed, "policy"))
    collector = RolloutCollector(env, algo.policy, acfg.num_steps, derive_seed(cfg.seed, "env"),
                                 derive_seed(cfg.seed, "actions"), cfg.env.normalize_obs, cfg.env.normalize_reward,
                                 getattr(acfg, "gamma", 0.99), cfg.env.clip_obs)
    evaluator = EpisodeEvaluator(lambda n: make_env(cfg.env, n), algo.policy, cfg.trainer.eval_episodes,
                                 derive_seed(cfg.seed, "eval"), collector.normalize_eval_obs)
    return Trainer(algo, collector, cfg.trainer, run_dir, evaluator)


def default_run_dir(cfg: RunConfig, root: str | Path = "runs") -> Path:
    """``runs/<algo>_<env>_s<seed>_<time>`` (the env part only for environment-based algorithms);
    a numeric suffix keeps two runs started in the same second apart."""
    env_part = f"_{cfg.env.id.replace('/', '-')}" if REGISTRY[cfg.algo].data == "rollout" else ""
    base = Path(root) / f"{cfg.algo}{env_part}_s{cfg.seed}_{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        path, n = base.with_name(f"{base.name}-{n}"), n + 1
    return path


def train(config: str | Path | dict, overrides: list[str] = (), run_dir: str | Path | None = None,
          until_step: int | None = None, init_from: str | Path | None = None) -> tuple[Path, dict]:
    """Start a new run. ``init_from`` (a run dir or checkpoint) copies only the policy weights."""
    data = load_yaml(config) if not isinstance(config, dict) else config
    cfg = parse_run_config(apply_overrides(data, list(overrides)))
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    if (run_dir / "checkpoints").exists():
        raise ConfigError(f"run dir {run_dir} already holds checkpoints: use `policyopt resume {run_dir}`")
    trainer = build_trainer(cfg, run_dir)
    dump_yaml(run_config_dict(cfg), run_dir / "config.yaml")
    if init_from is not None:
        tree, _ = ckpt.load_checkpoint(init_from)
        weights = tree.get("algorithm", {}).get("learner", {}).get("net")
        if REGISTRY[cfg.algo].data != "rollout" or weights is None:
            raise ConfigError(f"--init-from: starting from another run's weights is supported for the on-policy "
                              f"actor-critic algorithms (ppo, a2c, reinforce), not yet for {cfg.algo!r}")
        try:
            trainer.algorithm.policy.load_state_dict(weights)
        except RuntimeError as err:
            raise ConfigError(f"--init-from: the weights in {init_from} do not fit this network: {err}") from None
    return run_dir, trainer.run(until_step)


def resume(run_dir: str | Path, overrides: list[str] = (), force: bool = False,
           until_step: int | None = None) -> tuple[Path, dict]:
    """Continue a run exactly where its latest checkpoint left it."""
    run_dir = Path(run_dir)
    saved = load_yaml(run_dir / "config.yaml")
    cfg = parse_run_config(apply_overrides(saved, list(overrides)))
    old = parse_run_config(saved)
    changed = _geometry_changes(old, cfg)
    if changed and not force:
        raise ConfigError(f"resume would change the batch geometry ({', '.join(changed)}); "
                          "pass --force to accept a run that is no longer exactly reproducible")
    trainer = build_trainer(cfg, run_dir)
    trainer.restore()
    dump_yaml(run_config_dict(cfg), run_dir / "config.yaml")
    return run_dir, trainer.run(until_step)


def _geometry_changes(old: RunConfig, new: RunConfig) -> list[str]:
    keys = [f"env.{k}" for k in ("id", "num_envs", "vectorization")]
    keys += [f"{new.algo}.{k}" for k in getattr(REGISTRY[new.algo].cls, "batch_geometry", ())]
    out = [] if old.algo == new.algo else ["algo"]
    for key in keys:
        section, name = key.split(".")
        a = getattr(old.env if section == "env" else old.algo_config, name, None)
        b = getattr(new.env if section == "env" else new.algo_config, name, None)
        if a != b:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out


def evaluate_run(run_dir: str | Path, episodes: int | None = None, deterministic: bool = True) -> dict[str, float]:
    """Score the latest checkpoint of a run on fresh evaluation episodes."""
    run_dir = Path(run_dir)
    cfg = parse_run_config(load_yaml(run_dir / "config.yaml"))
    trainer = build_trainer(cfg, run_dir)
    tree, step = ckpt.load_checkpoint(run_dir)
    trainer.load_state_dict(tree)
    ev = trainer.evaluator
    if ev is None:
        raise ConfigError(f"{cfg.algo}: this run has no evaluator (its config names no evaluation data)")
    ev.episodes = episodes or ev.episodes
    ev.deterministic = deterministic
    out = {"step": step, **ev.evaluate()}
    return out
