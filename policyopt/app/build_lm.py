"""Language-model run construction from a run config's ``model:``, ``data:`` and ``reward:`` sections:
the policy (optionally started from another run's weights), the prompt pools, the reward function, the
``TextCollector`` and the held-out evaluator of an online LM RL run."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from policyopt.algos.grpo import GRPO
from policyopt.core.config import ConfigError
from policyopt.lm.source import ModelConfig, TextEvaluator, TextSource, load_model, parse_reward_config, prompt_pools
from policyopt.runtime.text_collector import TextCollector

LM_WEIGHT_PATHS = ("policy", "core.policy", "model", "rl.policy")
"""Where LM algorithms keep the policy's weights in their ``state_dict()`` (GRPO family; LM-PPO;
DPO family, online preference and SFT; MPO): what ``model.init_from`` looks for in another run."""


def _subtree(tree: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def load_lm_weights(model: Any, source: str, where: str = "model.init_from") -> None:
    """Copy the policy weights of the LM run (or checkpoint) ``source`` into ``model``, in place."""
    from policyopt.runtime import checkpoint as ckpt

    try:
        tree, _ = ckpt.load_checkpoint(source)
    except (FileNotFoundError, ckpt.CheckpointError) as err:
        raise ConfigError(f"{where}: {err}") from None
    algo_tree = tree.get("algorithm", {}) if isinstance(tree, dict) else {}
    names = {n for n, _ in model.named_parameters()}
    for path in LM_WEIGHT_PATHS:
        weights = _subtree(algo_tree, path)
        if isinstance(weights, dict) and weights and names <= set(weights) | _tied(model):
            break
    else:
        lora = any("lora_" in str(k) for p in LM_WEIGHT_PATHS for k in (_subtree(algo_tree, p) or {}))
        why = ("it trained LoRA adapters only (merge them into the base model first)" if lora else
               "it holds no language-model weights with this model's parameter names (another architecture, "
               "or not an LM run)")
        raise ConfigError(f"{where}: cannot start from {source}: {why}")
    state = {k: v for k, v in weights.items() if k in names}
    try:
        missing, _ = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise ConfigError(f"{where}: the weights in {source} do not fit this model: "
                          f"{str(err).splitlines()[-1].strip()}") from None
    missing = set(missing) & names - _tied(model)
    if missing:
        raise ConfigError(f"{where}: {source} lacks weights for {sorted(missing)[:3]}")


def _tied(model: Any) -> set[str]:
    """Parameter names that alias another parameter (tied embeddings) and may be absent from a tree."""
    seen, tied = {}, set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            tied.add(name)
        seen.setdefault(id(p), name)
    return tied


def build_policy(cfg: ModelConfig) -> Any:
    """The :class:`~policyopt.lm.policy.LMPolicy` of a ``model:`` section (weights from ``init_from`` if set)."""
    from policyopt.lm.policy import LMPolicy, LoRAConfig

    model, tokenizer = load_model(cfg.path, cfg.dtype)
    if cfg.init_from:
        load_lm_weights(model, cfg.init_from)
    lora = LoRAConfig(r=cfg.lora_rank, alpha=cfg.lora_alpha) if cfg.lora_rank else None
    return LMPolicy(model, tokenizer, lora=lora)


# ----------------------------------------------------------------------------- rewards

def load_callable(spec: str, kwargs: dict[str, Any] | None = None, where: str = "reward.function") -> Any:
    """``package.module:name`` or ``path/to/file.py:name`` -> the object (called with ``kwargs`` if given)."""
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise ConfigError(f"{where}: expected 'package.module:function' or 'path/to/file.py:function', got {spec!r}")
    try:
        if module_part.endswith(".py") or "/" in module_part:
            path = Path(module_part)
            if not path.is_file():
                raise ConfigError(f"{where}: no such file {str(path)!r} (relative paths start at the working "
                                  f"directory {Path.cwd()})")
            name = f"policyopt_user_{path.stem}_{abs(hash(str(path.resolve())))}"
            module = sys.modules.get(name)
            if module is None:
                loader_spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(loader_spec)
                loader_spec.loader.exec_module(module)
                sys.modules[name] = module
        else:
            module = importlib.import_module(module_part)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - the user's module failed to import: name it and why
        raise ConfigError(f"{where}: importing {module_part!r} failed: {type(err).__name__}: {err}") from None
    if not hasattr(module, attr):
        public = sorted(n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise ConfigError(f"{where}: {module_part!r} has no {attr!r} (callables there: {public})")
    obj = getattr(module, attr)
    if kwargs is not None:
        try:
            obj = obj(**kwargs)
        except Exception as err:  # noqa: BLE001
            raise ConfigError(f"{where}: {spec}(**kwargs) failed: {type(err).__name__}: {err}") from None
    if not callable(obj):
        raise ConfigError(f"{where}: {spec} is a {type(obj).__name__}, not a callable reward function")
    return obj


def load_reward_model(run: str, batch_size: int = 64, uncertainty_penalty: float = 0.0,
                      where: str = "reward.run") -> Any:
    """The reward function of a trained ``algo: reward_model`` run (its latest checkpoint)."""
    from policyopt.algos.reward_model import RewardModelTrainer, as_reward_fn, build_ensemble
    from policyopt.app.run import parse_run_config
    from policyopt.core.config import load_yaml
    from policyopt.runtime import checkpoint as ckpt

    run_dir = Path(run)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{where}: {run!r} is not a run directory (no config.yaml)")
    cfg = parse_run_config(load_yaml(run_dir / "config.yaml"))
    if cfg.algo != "reward_model":
        raise ConfigError(f"{where}: {run!r} is an {cfg.algo!r} run, not a reward_model run")
    rm = cfg.algo_config
    members, tok = build_ensemble(rm.backbone, rm.ensemble_size, rm.backbone_kind, rm.pooling, rm.seed)
    trainer = RewardModelTrainer(rm, members, 1)
    try:
        tree, _ = ckpt.load_checkpoint(run_dir)
        trainer.members.load_state_dict(tree["algorithm"]["members"])
    except (FileNotFoundError, ckpt.CheckpointError, KeyError, RuntimeError) as err:
        raise ConfigError(f"{where}: cannot load the reward model of {run!r}: {err}") from None
    return as_reward_fn(trainer, tok, uncertainty_penalty, batch_size)


def build_reward(cfg: Any, tokenizer: Any = None) -> Any:
    """The reward function (``RewardFn``) of a parsed ``reward:`` section (``lm.source.parse_reward_config``)."""
    from policyopt.lm import rewards as R

    kind = cfg.kind
    if kind == "task":
        return R.default_task_reward(cfg.format_weight)
    if kind == "answer":
        match = R.AnswerMatch(mode=cfg.mode, abs_tol=cfg.abs_tol)
        if not cfg.format_weight:
            return match
        return R.CompositeReward({"correct": match, "format": R.FormatReward()},
                                 {"correct": 1.0, "format": cfg.format_weight})
    if kind == "format":
        return R.FormatReward(cfg.pattern, tuple(cfg.required_tags))
    if kind == "length":
        return R.LengthPenalty(cfg.target, cfg.coef, tokenizer if cfg.tokens else None)
    if kind in ("unit_tests", "efficiency", "sql"):
        from policyopt.lm.code_rewards import build_code_reward
        from policyopt.lm.sandbox.backends import SandboxUnavailable

        try:
            return build_code_reward(cfg)
        except SandboxUnavailable as err:
            raise ConfigError(f"reward.sandbox.backend: {err}") from None
    if kind == "reward_model":
        return load_reward_model(cfg.run, cfg.batch_size, cfg.uncertainty_penalty)
    if kind == "python":
        return load_callable(cfg.function, cfg.kwargs)
    parts, weights = {}, {}
    for name, raw in cfg.components.items():
        raw = dict(raw)
        weights[name] = float(raw.pop("weight", 1.0))
        parts[name] = build_reward(parse_reward_config(raw, f"reward.components.{name}", nested=True), tokenizer)
    return R.CompositeReward(parts, weights)


def _checks_answers(reward_cfg: Any, examples: list[Any]) -> bool:
    """Whether held-out accuracy (the extracted answer checked against ``metadata["answer"]``) means
    something: every held-out prompt has an answer and the reward does not grade code by running it."""
    kinds = ({dict(c).get("kind", "task") for c in reward_cfg.components.values()}
             if reward_cfg.kind == "weighted" else {reward_cfg.kind})
    graded_by_running = bool(kinds & {"unit_tests", "efficiency", "sql"})
    answered = all("answer" in ex.metadata or ex.metadata.get("task") == "countdown" for ex in examples)
    return answered and not graded_by_running


def build_source(run_config: Any) -> TextSource:
    """Policy, prompt pools, guarded reward and (multi-turn) env factory of an online LM run."""
    from policyopt.lm.reward import RewardGuard

    policy = build_policy(run_config.model)
    train, held_out = prompt_pools(run_config.data)
    reward = RewardGuard(build_reward(run_config.reward, policy.tokenizer))
    factory = None
    cc = run_config.algo_config.collect
    if cc.tool_env == "calculator":
        from policyopt.lm.textenv import CalculatorEnv

        def factory(example: Any) -> Any:
            return CalculatorEnv(policy.tokenizer, [example], max_turns=cc.max_turns)
    return TextSource(policy, train, held_out, reward, factory)


def build_parts(run_config: Any, cls: type = GRPO, **algo_kwargs: Any):
    """``(algorithm, collector, evaluator)`` of an LM run config (used by every LM RL algorithm)."""
    from policyopt.core.seeding import derive_seed

    cfg, seed = run_config.algo_config, run_config.seed
    cc = cfg.collect
    source = build_source(run_config)
    per_update = cc.prompts_per_step * cc.completions_per_prompt
    total_updates = -(-run_config.trainer.total_steps // per_update)
    algo = cls(cfg, source.policy, total_updates, derive_seed(seed, "minibatches"), **algo_kwargs)
    collector = TextCollector(source.policy, source.train, source.reward, cc, derive_seed(seed, "sampler"),
                              env_factory=source.env_factory, greedy_baseline=cfg.advantage == "remax")
    evaluator = TextEvaluator(source.policy, source.eval, source.reward.fn, max_new_tokens=cc.max_new_tokens,
                              temperature=cc.temperature, samples=run_config.data.eval_samples,
                              seed=derive_seed(seed, "eval"), env_factory=source.env_factory,
                              max_turns=cc.max_turns, accuracy=_checks_answers(run_config.reward, source.eval))
    return algo, collector, evaluator


def build_text_rl(run_config: Any, run_dir: Path) -> tuple[Any, Any, Any]:
    """Registry builder of every online LM RL algorithm (GRPO, RLOO, ReMax, LMReinforce, LM-PPO, LOOP):
    the algorithm class is the registry's; LOOP always plays the calculator text environment."""
    from policyopt.app.registry import REGISTRY

    cls = REGISTRY[run_config.algo].cls
    cfg = run_config.algo_config
    if getattr(cls, "text_env", None) and cfg.collect.tool_env == "none":
        cfg = dataclasses.replace(cfg, collect=dataclasses.replace(cfg.collect, tool_env=cls.text_env))
        run_config = dataclasses.replace(run_config, algo_config=cfg)
    return build_parts(run_config, cls)
