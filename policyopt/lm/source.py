"""Where online LM runs get their model, prompts, reward and held-out evaluation from.

``TextSourceConfig`` is the ``source:`` section of every LM RL config (GRPO, RLOO, ReMax, REINFORCE,
PPO, LOOP). :func:`build_source` turns it into an :class:`~policyopt.lm.policy.LMPolicy`, a training
prompt pool and a held-out pool (disjoint by construction: :func:`policyopt.lm.tasks.split_of`),
the guarded reward and, for multi-turn runs, a ``TextEnv`` factory. :class:`TextEvaluator` is the
trainer's evaluator: held-out greedy accuracy and sampled (temperature-``T``) mean reward, each with
its own fixed seed, so evaluation never touches training randomness.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import torch

from policyopt.core.config import ConfigError, configclass


@configclass
class TextSourceConfig:
    """Model, task family and reward of an online LM run."""

    model: str = "builtin"
    """``builtin`` (the shipped small Llama, ``policyopt.lm.load_builtin``) or a local model directory."""
    tasks: dict[str, Annotated[int, pydantic.Field(ge=1)]] = dataclasses.field(
        default_factory=lambda: {"addition": 2000})
    """Training prompts per generated task family (``policyopt.lm.tasks.TASKS``), train split only."""
    task_params: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """Difficulty knobs per task (default: the built-in model's ``TASK_PARAMS``)."""
    eval_prompts: Annotated[int, pydantic.Field(ge=1)] = 200
    """Held-out prompts per task family (eval split, never seen in training)."""
    data_seed: Annotated[int, pydantic.Field(ge=0)] = 0
    """Seed of the generated prompt pools (kept apart from the run seed: all seeds see the same data)."""
    format_weight: Annotated[float, pydantic.Field(ge=0)] = 0.1
    """Reward = correctness + format_weight * (answer tags present)."""
    env: Literal["none", "calculator"] = "none"
    """``calculator``: multi-turn episodes in the calculator tool environment (``policyopt.lm.textenv``)."""
    eval_samples: Annotated[int, pydantic.Field(ge=0)] = 4
    """Sampled completions per held-out prompt for ``eval/sampled_reward`` (0: greedy accuracy only)."""
    lora_rank: Annotated[int, pydantic.Field(ge=0)] = 0
    """> 0: train LoRA adapters of this rank (peft) instead of all weights; the reference policy is then
    the same model with adapters disabled (no second copy)."""
    lora_alpha: Annotated[float, pydantic.Field(gt=0)] = 16.0
    """LoRA scale numerator (update scaled by alpha / rank)."""


@dataclass
class TextSource:
    policy: Any
    train: list[Any]
    eval: list[Any]
    reward: Any
    env_factory: Any = None


def load_model(name: str) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for ``builtin`` or a local directory, in float32 train-ready form."""
    from policyopt.lm.builtin import load_builtin

    path = None if name == "builtin" else Path(name)
    if path is not None and not (path / "config.json").is_file():
        raise ConfigError(f"source.model: {name!r} is neither 'builtin' nor a local model directory with config.json")
    try:
        return load_builtin(path)
    except FileNotFoundError as err:
        raise ConfigError(f"source.model: {err}") from None


def task_pools(cfg: TextSourceConfig) -> tuple[list[Any], list[Any]]:
    """(train examples, held-out examples) of the configured task families."""
    from policyopt.lm.builtin import TASK_PARAMS
    from policyopt.lm.tasks import TASKS, generate_mixture

    unknown = sorted(set(cfg.tasks) - set(TASKS))
    if unknown:
        raise ConfigError(f"source.tasks: unknown task {unknown[0]!r}; known: {sorted(TASKS)}")
    params = {t: cfg.task_params.get(t, TASK_PARAMS.get(t, {})) for t in cfg.tasks}
    train = generate_mixture(dict(cfg.tasks), "train", cfg.data_seed, params)
    held_out = generate_mixture({t: cfg.eval_prompts for t in cfg.tasks}, "eval", cfg.data_seed, params)
    return train, held_out


def build_source(cfg: TextSourceConfig, max_turns: int = 3) -> TextSource:
    from policyopt.lm.policy import LMPolicy, LoRAConfig
    from policyopt.lm.reward import RewardGuard
    from policyopt.lm.rewards import default_task_reward

    model, tokenizer = load_model(cfg.model)
    lora = LoRAConfig(r=cfg.lora_rank, alpha=cfg.lora_alpha) if cfg.lora_rank else None
    policy = LMPolicy(model, tokenizer, lora=lora)
    train, held_out = task_pools(cfg)
    factory = None
    if cfg.env == "calculator":
        from policyopt.lm.textenv import CalculatorEnv

        def factory(example: Any) -> Any:
            return CalculatorEnv(tokenizer, [example], max_turns=max_turns)
    return TextSource(policy, train, held_out, RewardGuard(default_task_reward(cfg.format_weight)), factory)


class TextEvaluator:
    """Held-out evaluation (trainer ``Evaluator``): ``eval/accuracy/<task>`` and ``eval/accuracy/all``
    with greedy decoding, and ``eval/sampled_reward`` / ``eval/sampled_accuracy`` over ``samples``
    completions per prompt at ``temperature`` drawn from a generator seeded with ``seed`` every call.
    With ``env_factory`` the same is measured on multi-turn episodes (reward = the environment's).
    """

    def __init__(self, policy: Any, examples: Sequence[Any], reward_fn: Any, *, max_new_tokens: int,
                 temperature: float = 1.0, samples: int = 4, seed: int = 0, env_factory: Any = None,
                 max_turns: int = 3):
        self.policy, self.examples, self.reward_fn = policy, list(examples), reward_fn
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
        out = evaluate_examples(model, tok, self.examples, max_new_tokens=self.max_new_tokens).metrics()
        if self.samples:
            res = evaluate_examples(model, tok, self.examples, reward_fn=RewardGuard(self.reward_fn), greedy=False,
                                    num_samples=self.samples, temperature=self.temperature,
                                    max_new_tokens=self.max_new_tokens, seed=self.seed)
            out["eval/sampled_reward"] = float(res.mean_reward)
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


__all__ = ["TextEvaluator", "TextSource", "TextSourceConfig", "build_source", "load_model", "task_pools"]
