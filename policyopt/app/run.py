"""From a run config (YAML) to a running trainer: ``train``, ``resume`` and ``evaluate_run``.

A run directory holds ``config.yaml`` (the resolved config), ``metrics.jsonl``, ``tb/`` and
``checkpoints/``. Resume continues counters, schedules, RNGs, env state and normalisers exactly;
changing the batch geometry on resume is refused unless forced. Starting a *new* run from the
weights of another is a separate, explicit action (``init_from``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from policyopt.app.build_classic import EnvConfig, make_env, make_seeded_env
from policyopt.app.registry import REGISTRY
from policyopt.app.weights import init_weights
from policyopt.core.config import ConfigError, apply_overrides, build, dump_yaml, load_yaml, to_dict
from policyopt.core.seeding import derive_seed, seed_everything
from policyopt.nets.actor_critic import ActionSpec
from policyopt.runtime import checkpoint as ckpt
from policyopt.runtime.collectors import ObsAdapter, RolloutCollector
from policyopt.runtime.evaluate import EpisodeEvaluator
from policyopt.runtime.trainer import Trainer, TrainerConfig


@dataclass(frozen=True)
class RunConfig:
    """A validated run config. Environment-based algorithms have ``env``; LM algorithms have ``model``
    (and the online RL ones ``data`` and ``reward``) instead: see ``AlgoSpec.sections``."""

    algo: str
    seed: int
    env: EnvConfig | None
    trainer: TrainerConfig
    algo_config: Any
    model: Any = None
    data: Any = None
    reward: Any = None


BASE_KEYS = ("algo", "seed", "trainer")
SECTION_HELP = {
    "env": "it trains a language model: its prompts come from `data:`, its model from `model:`",
    "model": "it trains on an environment (`env:`), not a language model",
}


def _lm_section(key: str, value: Any) -> Any:
    from policyopt.lm.source import ModelConfig, PromptDataConfig, parse_reward_config

    if key == "reward":
        return parse_reward_config(value)
    return build(ModelConfig if key == "model" else PromptDataConfig, value, key)


def parse_run_config(data: dict[str, Any]) -> RunConfig:
    """Validate a run-config mapping; every problem names its key."""
    name = data.get("algo")
    if name not in REGISTRY:
        raise ConfigError(f"algo: unknown algorithm {name!r}; choose one of {sorted(REGISTRY)}")
    spec = REGISTRY[name]
    allowed = (*BASE_KEYS, *spec.sections)
    extra = sorted(set(data) - set(allowed) - {name})
    if extra:
        key = extra[0]
        if key in ("env", "model", "data", "reward"):
            why = SECTION_HELP["env" if key == "env" else "model"]
            raise ConfigError(f"{key}: {name} takes no {key}: section ({why}); its top-level keys are "
                              f"{list(allowed)} and {name!r}")
        raise ConfigError(f"{key}: unknown key (top-level keys are {list(allowed)} and {name!r})")
    section = data.get(name)
    if isinstance(section, dict) and "source" in section and "data" in spec.sections:
        raise ConfigError(f"{name}.source: this section moved to the top level: `model:` (path, dtype, LoRA), "
                          "`data:` (tasks, eval_prompts, eval_samples; or a JSONL file / dataset) and `reward:`")
    if isinstance(section, dict) and isinstance(section.get("model"), str) and "model" in spec.sections:
        raise ConfigError(f"{name}.model: this key moved to the top-level `model:` section "
                          f"(model: {{path: {section['model']}}})")
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer (got {seed!r})")
    env = build(EnvConfig, data.get("env"), "env") if "env" in spec.sections else None
    lm = {key: _lm_section(key, data.get(key)) for key in ("model", "data", "reward") if key in spec.sections}
    return RunConfig(name, seed, env, build(TrainerConfig, data.get("trainer"), "trainer"),
                     build(spec.config_cls, section, name), **lm)


def run_config_dict(cfg: RunConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"algo": cfg.algo, "seed": cfg.seed}
    for key in ("env", "model", "data", "reward"):
        if getattr(cfg, key) is not None:
            out[key] = to_dict(getattr(cfg, key))
    return {**out, "trainer": to_dict(cfg.trainer), cfg.algo: to_dict(cfg.algo_config)}


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
    """Start a new run. ``init_from`` (a run dir or checkpoint) copies only the learned weights
    (:func:`policyopt.app.weights.init_weights`; every algorithm with weights)."""
    data = load_yaml(config) if not isinstance(config, dict) else config
    cfg = parse_run_config(apply_overrides(data, list(overrides)))
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    if (run_dir / "checkpoints").exists():
        raise ConfigError(f"run dir {run_dir} already holds checkpoints: use `policyopt resume {run_dir}`")
    if init_from is not None and cfg.model is not None:  # LM runs: the start (and reference) is that run's policy
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, init_from=str(init_from)))
        init_from = None
    trainer = build_trainer(cfg, run_dir)
    if init_from is not None:  # before config.yaml: a refused source leaves no half-made run behind
        init_weights(trainer.algorithm, init_from)
    dump_yaml(run_config_dict(cfg), run_dir / "config.yaml")
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
