"""The ``model:``, ``data:`` and ``reward:`` sections of an LM run config, and where a run gets its
model, prompts and held-out evaluation from.

Every LM algorithm takes its model from ``model:`` (:class:`ModelConfig`); the online RL algorithms
(GRPO, RLOO, ReMax, REINFORCE, LM-PPO, LOOP) take their prompts from ``data:``
(:class:`PromptDataConfig`: the built-in task families, a JSONL file or a ``datasets`` dataset) and
their reward from ``reward:`` (one of :data:`REWARD_KINDS`, parsed by :func:`parse_reward_config`;
``policyopt.app.build_lm.build_reward`` makes the function). Training and held-out prompts are
disjoint by construction (:func:`policyopt.lm.tasks.split_of`, or an explicit eval file or split).
:class:`TextEvaluator` is the trainer's evaluator: held-out greedy accuracy and reward, and sampled
(temperature-``T``) mean reward, each with its own fixed seed, so evaluation never touches training
randomness.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import torch

from policyopt.core.config import ConfigError, build, configclass


@configclass
class ModelConfig:
    """The ``model:`` section of every LM run."""

    path: str = "builtin"
    """``builtin`` (the shipped small Llama, ``policyopt.lm.load_builtin``), ``tiny`` (an untrained ~60k-parameter
    Llama with the character tokenizer) or a local Hugging Face model directory."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights' dtype (float32 on CPU; bfloat16 halves memory on accelerators)."""
    lora_rank: Annotated[int, pydantic.Field(ge=0)] = 0
    """> 0: train LoRA adapters of this rank (peft) instead of all weights; the reference policy is then
    the same model with adapters disabled (no second copy)."""
    lora_alpha: Annotated[float, pydantic.Field(gt=0)] = 16.0
    """LoRA scale numerator (update scaled by alpha / rank)."""
    init_from: str | None = None
    """A run directory or checkpoint of another LM run (any LM algorithm with the same architecture):
    start from its learned weights; the reference policy is then these weights (``--init-from``)."""


TASK_FAMILIES_EXTRA = ("code",)
"""Built-in families outside ``policyopt.lm.tasks.TASKS``: ``code`` (``policyopt.lm.code_rewards.coding_tasks``)."""


@configclass
class PromptDataConfig:
    """The ``data:`` section of an online LM RL run: where the prompts (and their ground truth) come from."""

    source: Literal["tasks", "jsonl", "dataset"] = "tasks"
    """``tasks``: generated built-in task families; ``jsonl``: a JSONL file (``path``); ``dataset``: a
    ``datasets`` dataset (``path`` is a directory written by ``save_to_disk`` or a name
    ``datasets.load_dataset`` resolves locally)."""
    tasks: dict[str, Annotated[int, pydantic.Field(ge=1)]] = dataclasses.field(
        default_factory=lambda: {"addition": 2000})
    """tasks: training prompts per family (``policyopt.lm.tasks.TASKS`` and ``code``), train split only."""
    task_params: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """tasks: difficulty knobs per family (default: the built-in model's ``TASK_PARAMS``)."""
    eval_prompts: Annotated[int, pydantic.Field(ge=1)] = 200
    """Held-out prompts (per family for ``tasks``; at most this many for files and datasets)."""
    data_seed: Annotated[int, pydantic.Field(ge=0)] = 0
    """Seed of the generated prompt pools (kept apart from the run seed: all seeds see the same data)."""
    path: str | None = None
    """jsonl: the training file; dataset: the dataset directory or name."""
    eval_path: str | None = None
    """jsonl: a held-out file (default: the prompts of ``path`` whose hash falls in the eval split)."""
    split: str = "train"
    """dataset: the split to train on (for a ``DatasetDict``)."""
    eval_split: str | None = None
    """dataset: the held-out split (default: the hash split of ``split``, as for JSONL)."""
    prompt_column: str = "prompt"
    """Column holding the prompt text."""
    answer_column: str | None = "answer"
    """Column holding the reference answer (``metadata["answer"]``; optional per record). Every other
    column goes into the example's metadata as it is (``tests``, ``asserts``, ``gold_sql``, ``db`` ...)."""
    eval_percent: Annotated[int, pydantic.Field(ge=1, le=50)] = 10
    """Percent of prompts (by a stable hash) held out when there is no explicit eval file or split."""
    eval_samples: Annotated[int, pydantic.Field(ge=0)] = 4
    """Sampled completions per held-out prompt for ``eval/sampled_reward`` (0: greedy only)."""


# ----------------------------------------------------------------------------- reward section

@configclass
class TaskRewardConfig:
    """Correctness by the task's checker (``metadata["task"]``) + ``format_weight`` * answer tags."""

    kind: Literal["task"] = "task"
    format_weight: Annotated[float, pydantic.Field(ge=0)] = 0.1
    """Weight of the answer-tag format term."""


@configclass
class AnswerRewardConfig:
    """1/0 by matching the extracted answer against ``metadata["answer"]`` (user data without a task
    checker), + ``format_weight`` * answer tags."""

    kind: Literal["answer"] = "answer"
    mode: Literal["exact", "numeric"] = "exact"
    """``exact``: normalised strings; ``numeric``: exact rationals within ``abs_tol``."""
    abs_tol: Annotated[float, pydantic.Field(ge=0)] = 0.0
    format_weight: Annotated[float, pydantic.Field(ge=0)] = 0.0


@configclass
class FormatRewardConfig:
    """1 when the completion matches ``pattern`` and holds every tag of ``required_tags``, else 0."""

    kind: Literal["format"] = "format"
    pattern: str | None = None
    required_tags: tuple[str, ...] = ("answer",)


@configclass
class LengthRewardConfig:
    """``-coef * max(0, length - target) / target`` (a cost on long completions)."""

    kind: Literal["length"] = "length"
    target: Annotated[int, pydantic.Field(ge=1)] = 64
    coef: Annotated[float, pydantic.Field(ge=0)] = 1.0
    tokens: bool = True
    """Count tokens of the policy's tokenizer (False: characters)."""


@configclass
class RewardModelRewardConfig:
    """The scalar score of a trained reward model (the run directory of an ``algo: reward_model`` run)."""

    kind: Literal["reward_model"] = "reward_model"
    run: str = ""
    """Run directory of the reward-model run (its latest checkpoint is used)."""
    batch_size: Annotated[int, pydantic.Field(ge=1)] = 64
    uncertainty_penalty: Annotated[float, pydantic.Field(ge=0)] = 0.0
    """Ensembles: score = mean - uncertainty_penalty * std over members (conservative against over-optimisation)."""


@configclass
class PythonRewardConfig:
    """A user's reward function ``fn(prompts, completions, metadata) -> list[float | None]``."""

    kind: Literal["python"] = "python"
    function: str = ""
    """``package.module:function`` (importable) or ``path/to/file.py:function`` (relative to the working
    directory). With ``kwargs``, the named object is a factory called as ``obj(**kwargs)``."""
    kwargs: dict[str, Any] | None = None


@configclass
class WeightedRewardConfig:
    """``sum_k weight_k * r_k`` of named components, each a reward section of its own plus ``weight``."""

    kind: Literal["weighted"] = "weighted"
    components: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """name -> ``{kind: ..., weight: w, ...}`` (weight defaults to 1)."""


def _reward_kinds() -> dict[str, type]:
    from policyopt.lm.code_rewards import CodeRewardConfig

    return {"task": TaskRewardConfig, "answer": AnswerRewardConfig, "format": FormatRewardConfig,
            "length": LengthRewardConfig, "unit_tests": CodeRewardConfig, "efficiency": CodeRewardConfig,
            "sql": CodeRewardConfig, "reward_model": RewardModelRewardConfig, "python": PythonRewardConfig,
            "weighted": WeightedRewardConfig}


REWARD_KINDS = ("task", "answer", "format", "length", "unit_tests", "efficiency", "sql", "reward_model", "python",
                "weighted")
"""The ``reward.kind`` values (``unit_tests``/``efficiency``/``sql``: ``lm.code_rewards.CodeRewardConfig``)."""


def parse_reward_config(data: Mapping[str, Any] | None, where: str = "reward", nested: bool = False) -> Any:
    """The reward section's config object (by ``kind``; default ``task``); every problem names its key."""
    data = dict(data or {})
    kind = data.get("kind", "task")
    if kind not in REWARD_KINDS:
        raise ConfigError(f"{where}.kind: unknown reward {kind!r}; choose one of {list(REWARD_KINDS)}")
    cfg = build(_reward_kinds()[kind], {**data, "kind": kind}, where)
    if kind == "weighted":
        if nested:
            raise ConfigError(f"{where}.kind: a weighted reward cannot be a component of another")
        if not cfg.components:
            raise ConfigError(f"{where}.components: a weighted reward needs at least one component")
        for name, part in cfg.components.items():
            part = dict(part)
            weight = part.pop("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ConfigError(f"{where}.components.{name}.weight: expected a finite number (got {weight!r})")
            parse_reward_config(part, f"{where}.components.{name}", nested=True)
    if kind in ("python", "reward_model") and not (cfg.function if kind == "python" else cfg.run):
        key = "function" if kind == "python" else "run"
        raise ConfigError(f"{where}.{key}: required for reward kind {kind!r}")
    return cfg


@dataclasses.dataclass
class TextSource:
    policy: Any
    train: list[Any]
    eval: list[Any]
    reward: Any
    env_factory: Any = None


def load_model(name: str, dtype: str = "float32", where: str = "model.path") -> tuple[Any, Any]:
    """``(model, tokenizer)`` for ``builtin``, ``tiny`` or a local directory, train-ready in ``dtype``."""
    from policyopt.lm.builtin import load_builtin, tiny_model

    if name == "tiny":
        model, tok = tiny_model(0)
    else:
        path = None if name == "builtin" else Path(name)
        if path is not None and not (path / "config.json").is_file():
            raise ConfigError(f"{where}: {name!r} is neither 'builtin', 'tiny' nor a local model directory with "
                              "config.json")
        try:
            model, tok = load_builtin(path)
        except FileNotFoundError as err:
            raise ConfigError(f"{where}: {err}") from None
    if dtype != "float32":
        model = model.to(getattr(torch, dtype))
    return model, tok


def _task_pools(cfg: PromptDataConfig) -> tuple[list[Any], list[Any]]:
    from policyopt.lm.builtin import TASK_PARAMS
    from policyopt.lm.tasks import TASKS, generate_mixture

    unknown = sorted(set(cfg.tasks) - set(TASKS) - set(TASK_FAMILIES_EXTRA))
    if unknown:
        known = sorted(TASKS) + list(TASK_FAMILIES_EXTRA)
        raise ConfigError(f"data.tasks: unknown task {unknown[0]!r}; known: {known}")
    generated = {t: n for t, n in cfg.tasks.items() if t in TASKS}
    params = {t: cfg.task_params.get(t, TASK_PARAMS.get(t, {})) for t in generated}
    train = generate_mixture(generated, "train", cfg.data_seed, params) if generated else []
    held_out = generate_mixture({t: cfg.eval_prompts for t in generated}, "eval", cfg.data_seed,
                                params) if generated else []
    if "code" in cfg.tasks:
        from policyopt.lm.code_rewards import coding_tasks

        try:
            train += coding_tasks(cfg.tasks["code"], "train", cfg.data_seed)
            held_out += coding_tasks(cfg.eval_prompts, "eval", cfg.data_seed)
        except ValueError as err:
            raise ConfigError(f"data.tasks.code: {err}") from None
    return train, held_out


def _example(record: Any, cfg: PromptDataConfig, where: str) -> Any:
    from policyopt.lm.tasks import TaskExample

    if not isinstance(record, Mapping):
        raise ConfigError(f"{where}: expected an object with a {cfg.prompt_column!r} field, "
                          f"got {type(record).__name__}")
    prompt = record.get(cfg.prompt_column)
    if not isinstance(prompt, str) or not prompt:
        raise ConfigError(f"{where}: {cfg.prompt_column!r} must be a non-empty string (got {prompt!r}); "
                          "set data.prompt_column to the column that holds the prompt")
    meta = {k: v for k, v in record.items() if k != cfg.prompt_column}
    answer = record.get(cfg.answer_column) if cfg.answer_column else None
    if answer is not None:
        meta["answer"] = str(answer)
    return TaskExample(prompt, "" if answer is None else str(answer), meta)


def read_prompts_jsonl(path: str | Path, cfg: PromptDataConfig, key: str = "data.path") -> list[Any]:
    """Examples of a JSONL file (one object per line; blank lines skipped); errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}: no such file {str(path)!r}")
    out = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{key}: line {lineno} of {path} is not valid JSON ({err.msg})") from None
            out.append(_example(record, cfg, f"{key}: line {lineno} of {path}"))
    if not out:
        raise ConfigError(f"{key}: {path} holds no records")
    return out


def _dataset_split(cfg: PromptDataConfig, split: str, key: str) -> list[Any]:
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"{key}: data.source 'dataset' needs the `datasets` package (pip install "
                          "'policyopt[lm]')") from None
    where = Path(cfg.path)
    try:
        ds = datasets.load_from_disk(str(where)) if where.is_dir() else datasets.load_dataset(cfg.path)
    except Exception as err:  # noqa: BLE001 - any loader failure becomes a config error naming the path
        raise ConfigError(f"data.path: cannot load dataset {cfg.path!r}: {type(err).__name__}: {err}") from None
    if isinstance(ds, (datasets.DatasetDict, dict)):
        if split not in ds:
            raise ConfigError(f"{key}: dataset {cfg.path!r} has no split {split!r} (it has {sorted(ds)})")
        ds = ds[split]
    if cfg.prompt_column not in ds.column_names:
        raise ConfigError(f"data.prompt_column: dataset {cfg.path!r} has no column {cfg.prompt_column!r} "
                          f"(columns: {ds.column_names})")
    return [_example(row, cfg, f"{key}: row {i} of {cfg.path}") for i, row in enumerate(ds)]


def prompt_pools(cfg: PromptDataConfig) -> tuple[list[Any], list[Any]]:
    """(train examples, held-out examples) of a ``data:`` section; disjoint by construction."""
    from policyopt.lm.tasks import split_of

    if cfg.source == "tasks":
        return _task_pools(cfg)
    if not cfg.path:
        raise ConfigError(f"data.path: required when data.source is {cfg.source!r}")
    if cfg.source == "jsonl":
        rows = read_prompts_jsonl(cfg.path, cfg)
        explicit = read_prompts_jsonl(cfg.eval_path, cfg, "data.eval_path") if cfg.eval_path else None
    else:
        rows = _dataset_split(cfg, cfg.split, "data.split")
        explicit = _dataset_split(cfg, cfg.eval_split, "data.eval_split") if cfg.eval_split else None
    if explicit is not None:
        held = {ex.prompt for ex in explicit}
        train = [ex for ex in rows if ex.prompt not in held]
        held_out = explicit
    else:
        train = [ex for ex in rows if split_of(ex.prompt, cfg.eval_percent) == "train"]
        held_out = [ex for ex in rows if split_of(ex.prompt, cfg.eval_percent) == "eval"]
    if not train:
        raise ConfigError(f"data.path: no training prompts left in {cfg.path!r} after holding out the eval split")
    if not held_out:
        raise ConfigError(f"data.eval_percent: no prompt of {cfg.path!r} falls in the held-out split; give a "
                          "held-out file (data.eval_path) or split (data.eval_split), or raise data.eval_percent")
    return train, held_out[: cfg.eval_prompts]


class TextEvaluator:
    """Held-out evaluation (trainer ``Evaluator``): ``eval/accuracy/<task>`` and ``eval/accuracy/all``
    (unless ``accuracy=False``: data without a checkable answer) and the run's reward ``eval/reward``
    with greedy decoding, and ``eval/sampled_reward`` / ``eval/sampled_accuracy`` over ``samples``
    completions per prompt at ``temperature`` drawn from a generator seeded with ``seed`` every call.
    With ``env_factory`` the same is measured on multi-turn episodes (reward = the environment's).
    """

    def __init__(self, policy: Any, examples: Sequence[Any], reward_fn: Any, *, max_new_tokens: int,
                 temperature: float = 1.0, samples: int = 4, seed: int = 0, env_factory: Any = None,
                 max_turns: int = 3, accuracy: bool = True):
        self.policy, self.examples, self.reward_fn = policy, list(examples), reward_fn
        self.accuracy = accuracy
        self.max_new_tokens, self.temperature, self.samples, self.seed = max_new_tokens, temperature, samples, seed
        self.env_factory, self.max_turns = env_factory, max_turns
        self.episodes, self.deterministic = len(self.examples), True  # ``policyopt eval`` knobs

    def evaluate(self) -> dict[str, float]:
        """Greedy accuracy and sampled reward on the first ``episodes`` held-out prompts (all by default;
        ``policyopt eval --episodes N`` sets it; ``deterministic`` is accepted and ignored: both are reported)."""
        model = self.policy.model
        was_training = model.training
        full = self.examples
        self.examples = full[: self.episodes]
        try:
            if self.env_factory is not None:
                return self._episodes()
            return self._single_turn()
        finally:
            model.train(was_training)
            self.examples = full

    def _single_turn(self) -> dict[str, float]:
        from policyopt.lm.evaluate import evaluate_examples
        from policyopt.lm.reward import RewardGuard

        model, tok = self.policy.model, self.policy.tokenizer
        out = evaluate_examples(model, tok, self.examples, reward_fn=RewardGuard(self.reward_fn),
                                max_new_tokens=self.max_new_tokens, check=self.accuracy).metrics()
        if self.samples:
            res = evaluate_examples(model, tok, self.examples, reward_fn=RewardGuard(self.reward_fn), greedy=False,
                                    num_samples=self.samples, temperature=self.temperature,
                                    max_new_tokens=self.max_new_tokens, seed=self.seed, check=self.accuracy)
            out["eval/sampled_reward"] = float(res.mean_reward)
            if self.accuracy:
                out["eval/sampled_accuracy"] = float(res.accuracy["all"])
        return out

    def _episodes(self) -> dict[str, float]:
        from policyopt.lm.sampling import SamplingConfig
        from policyopt.lm.textenv import rollout

        out: dict[str, float] = {}
        modes = [("accuracy/all", 0.0, 1)] + ([("sampled_reward", self.temperature, self.samples)]
                                              if self.samples else [])
        for key, temperature, repeats in modes:
            envs = [self.env_factory(ex) for ex in self.examples for _ in range(repeats)]
            stops = tuple(sorted({s for env in envs for s in env.stop_strings}))
            cfg = SamplingConfig(max_new_tokens=self.max_new_tokens, temperature=temperature, stop_strings=stops)
            gen = torch.Generator().manual_seed(self.seed) if temperature > 0 else None
            trajs = rollout(lambda ctx, c=cfg, g=gen: self.policy.sample(ctx, c, g), envs,
                            seeds=[0] * len(envs), max_turns=self.max_turns)
            out[f"eval/{key}"] = sum(t.reward for t in trajs) / len(trajs)
        return out


__all__ = ["REWARD_KINDS", "ModelConfig", "PromptDataConfig", "TextEvaluator", "TextSource", "load_model",
           "parse_reward_config", "prompt_pools", "read_prompts_jsonl"]
