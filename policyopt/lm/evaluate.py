"""Held-out accuracy and reward of a causal LM on a task split, with greedy or sampled decoding.

``evaluate_examples(model, tokenizer, examples)`` decodes every prompt (greedy, or ``num_samples``
samples at a temperature), extracts the answer (``<answer>`` tags, ``\\boxed{}``, else the whole
text: :func:`policyopt.lm.rewards.extract_answer`) and checks it against the ground truth with
:func:`policyopt.lm.tasks.check_answer`. An optional reward function is run behind the
:class:`~policyopt.lm.reward.RewardGuard`; its mean over scorable completions is reported.
Accuracy is reported per task (``metadata["task"]``) and overall ("all").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from policyopt.lm.rewards import extract_answer
from policyopt.lm.tasks import TaskExample, check_answer, generate_mixture


@dataclass(frozen=True)
class EvalResult:
    """Per-task accuracy (fraction correct; key ``"all"`` for the pooled value) and details.

    ``correct`` is ``[num_examples * num_samples]`` bool in example-major order, aligned with
    ``completions`` and ``tasks``.
    """

    accuracy: dict[str, float]
    counts: dict[str, int]
    correct: np.ndarray
    completions: list[str]
    tasks: list[str]
    mean_reward: float | None = None
    unscorable_fraction: float | None = None

    def metrics(self, prefix: str = "eval") -> dict[str, float]:
        out = {f"{prefix}/accuracy/{k}": v for k, v in self.accuracy.items()}
        if self.mean_reward is not None:
            out[f"{prefix}/reward"] = self.mean_reward
            out[f"{prefix}/reward_unscorable_frac"] = float(self.unscorable_fraction or 0.0)
        return out


def generate_completions(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int = 32,
                         greedy: bool = True, temperature: float = 1.0, top_p: float = 1.0,
                         num_samples: int = 1, seed: int = 0, batch_size: int = 256) -> list[str]:
    """Decoded completions (special tokens removed), ``num_samples`` per prompt, prompt-major order.

    Uses the KV-cache sampler :func:`policyopt.lm.sampling.sample` in batches of ``batch_size``
    prompts, stopping at EOS. Sampling draws from one ``torch.Generator`` seeded with ``seed``
    (the global RNG is untouched); greedy decoding draws nothing.
    """
    from policyopt.lm.sampling import SamplingConfig, sample

    if greedy and num_samples != 1:
        raise ValueError("greedy decoding is deterministic: use num_samples=1 or greedy=False")
    if not greedy and temperature <= 0:
        raise ValueError(f"sampled decoding needs temperature > 0, got {temperature}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0 if greedy else temperature,
                            top_p=top_p, samples_per_prompt=num_samples)
    generator = None if greedy else torch.Generator().manual_seed(seed)
    ids = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    out: list[str] = []
    for start in range(0, len(ids), batch_size):
        samples = sample(model, ids[start:start + batch_size], config, generator=generator, pad_token_id=pad,
                         eos_token_ids=[tokenizer.eos_token_id])
        out.extend(tokenizer.batch_decode(samples.completion_lists(), skip_special_tokens=True))
    return out


def evaluate_examples(model: Any, tokenizer: Any, examples: Sequence[TaskExample], reward_fn: Any = None,
                      greedy: bool = True, num_samples: int = 1, temperature: float = 1.0,
                      max_new_tokens: int = 32, seed: int = 0, batch_size: int = 256,
                      check: bool = True) -> EvalResult:
    """Accuracy (and optionally guarded reward) of ``model`` on ``examples``; see the module doc.
    ``check=False``: no accuracy (examples without a checkable answer, e.g. code graded by tests)."""
    if not examples:
        raise ValueError("evaluate_examples needs at least one example")
    completions = generate_completions(model, tokenizer, [ex.prompt for ex in examples], max_new_tokens,
                                       greedy, temperature, 1.0, num_samples, seed, batch_size)
    rep = [ex for ex in examples for _ in range(num_samples)]
    tasks = [str(ex.metadata.get("task", "prompt")) for ex in rep]
    if check:
        correct = np.array([check_answer(extract_answer(c), ex.metadata) for c, ex in zip(completions, rep)])
        accuracy, counts = _per_task(correct, tasks)
    else:
        correct, accuracy, counts = np.zeros(0, dtype=bool), {}, {}
    mean_reward = unscorable = None
    if reward_fn is not None:
        from policyopt.lm.reward import RewardGuard

        guard = reward_fn if isinstance(reward_fn, RewardGuard) else RewardGuard(reward_fn)
        result = guard([ex.prompt for ex in rep], completions, [ex.metadata for ex in rep])
        scorable = result.scorable
        mean_reward = float(result.values[scorable].mean()) if bool(scorable.any()) else float("nan")
        unscorable = 1.0 - float(scorable.float().mean())
    return EvalResult(accuracy, counts, correct, completions, tasks, mean_reward, unscorable)


def _per_task(correct: np.ndarray, tasks: list[str]) -> tuple[dict[str, float], dict[str, int]]:
    names = np.array(tasks)
    accuracy, counts = {}, {}
    for task in sorted(set(tasks)):
        hit = correct[names == task]
        accuracy[task], counts[task] = float(hit.mean()), int(hit.size)
    accuracy["all"], counts["all"] = float(correct.mean()), int(correct.size)
    return accuracy, counts


def evaluate_tasks(model: Any, tokenizer: Any, counts: Mapping[str, int], split: str = "eval", seed: int = 0,
                   params: Mapping[str, Mapping[str, Any]] | None = None, **kwargs: Any) -> EvalResult:
    """Generate ``counts = {task: n}`` examples of ``split`` and evaluate.

    ``kwargs`` go to :func:`evaluate_examples`."""
    examples = generate_mixture(counts, split, seed, params)
    return evaluate_examples(model, tokenizer, examples, **kwargs)


class TaskEvaluator:
    """An ``Evaluator`` (trainer protocol): greedy accuracy of ``model`` on a fixed list of examples.

    ``evaluate()`` returns ``{"eval/accuracy/<task>": ..., "eval/accuracy/all": ...}`` and restores
    the model's train/eval mode afterwards. Decoding is greedy, so it consumes no RNG.
    """

    def __init__(self, model: Any, tokenizer: Any, examples: Sequence[TaskExample], max_new_tokens: int = 32,
                 batch_size: int = 256, reward_fn: Any = None):
        self.model, self.tokenizer, self.examples = model, tokenizer, list(examples)
        self.max_new_tokens, self.batch_size, self.reward_fn = max_new_tokens, batch_size, reward_fn

    def evaluate(self) -> dict[str, float]:
        was_training = self.model.training
        try:
            result = evaluate_examples(self.model, self.tokenizer, self.examples, reward_fn=self.reward_fn,
                                       max_new_tokens=self.max_new_tokens, batch_size=self.batch_size)
        finally:
            self.model.train(was_training)
        return result.metrics()
