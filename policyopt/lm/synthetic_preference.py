"""Synthetic preference data with a known ground truth, built on the project's tasks and tokenizer.

The truth (:class:`GroundTruth`): prompts come from the project's task families
(:mod:`policyopt.lm.tasks`), completions are short strings over a small alphabet of single-token
characters of the project's character tokenizer. Two kinds of truth:

- ``utility``: a hidden per-character utility ``u`` (a seeded permutation of ``linspace(-1, 1, A)``);
  ``r(y) = mean_t u[y_t]``, ``P(a > b) = sigma((r_a - r_b) / T)`` (``T = 0``: deterministic). Transitive.
- ``cyclic``: rock-paper-scissors per position: character class ``c = index % 3`` and ``c`` beats
  ``c - 1 (mod 3)``; ``a`` beats ``b`` when it wins more positions than it loses. Intransitive: no
  reward function explains it, so reward-model-based methods are biased while win-rate (SPO) and
  Nash (INPO, EGPO) methods are not.

Completions outside the alphabet or the length range are *invalid* and lose to any valid one.

A third kind, ``task`` (:class:`TaskTruth`), grades ``<answer>`` completions of numeric task prompts
(addition, multiplication, equation) by correctness, for models that already solve the tasks (the
built-in model).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import pydantic

from policyopt.core.config import configclass

if TYPE_CHECKING:
    from policyopt.data.preference import PreferenceRecords, RankedRecords

# ------------------------------------------------------------------------------------ ground truth

INVALID = -1


@dataclass(frozen=True)
class GroundTruth:
    """A known preference over short completions (see the module docstring).

    ``alphabet``: the completion characters; ``utility [A]`` per-character utility (``utility`` kind);
    ``temperature``: Bradley-Terry temperature of :meth:`preference` (0 = deterministic).
    """

    kind: Literal["utility", "cyclic"]
    alphabet: str
    utility: np.ndarray
    min_len: int
    max_len: int
    temperature: float = 0.0

    def codes(self, completions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(codes [B, max_len]`` alphabet indices, -1 past the end; ``valid [B]``)."""
        lut = np.full(256, INVALID, dtype=np.int64)
        lut[np.frombuffer(self.alphabet.encode(), dtype=np.uint8)] = np.arange(len(self.alphabet))
        out = np.full((len(completions), self.max_len), INVALID, dtype=np.int64)
        valid = np.zeros(len(completions), dtype=bool)
        for i, text in enumerate(completions):   # strings are short; the scoring below is vectorised
            raw = text.encode("ascii", "replace")
            if self.min_len <= len(raw) <= self.max_len:
                c = lut[np.frombuffer(raw, dtype=np.uint8)]
                valid[i] = bool((c >= 0).all())
                out[i, :len(raw)] = c
        return out, valid

    def valid(self, completions: Sequence[str], prompts: Sequence[str] | None = None) -> np.ndarray:
        """``[B]`` bool: the completion is well-formed (alphabet characters, length in range)."""
        return self.codes(completions)[1]

    def reward(self, completions: Sequence[str], prompts: Sequence[str] | None = None) -> np.ndarray:
        """``[B]`` true reward (``utility`` kind only): mean character utility; invalid -> ``min(u) - 1``."""
        if self.kind != "utility":
            raise ValueError("GroundTruth.reward: a cyclic (intransitive) preference has no reward function; "
                             "use preference() or win rates")
        codes, valid = self.codes(completions)
        present = codes >= 0
        total = np.where(present, self.utility[np.clip(codes, 0, None)], 0.0).sum(1)
        mean = total / np.maximum(present.sum(1), 1)
        return np.where(valid, mean, float(self.utility.min()) - 1.0)

    def preference(self, a: Sequence[str], b: Sequence[str], prompts: Sequence[str] | None = None) -> np.ndarray:
        """``[B]`` probability that ``a[i]`` is preferred to ``b[i]`` (``prompts`` unused: prompt-free truth)."""
        if len(a) != len(b):
            raise ValueError(f"preference: {len(a)} vs {len(b)} completions")
        if self.kind == "utility":
            d = self.reward(a) - self.reward(b)
            if self.temperature > 0:
                return 1.0 / (1.0 + np.exp(-d / self.temperature))
            return np.where(d > 0, 1.0, np.where(d < 0, 0.0, 0.5))
        ca, va = self.codes(a)
        cb, vb = self.codes(b)
        both = (ca >= 0) & (cb >= 0)
        diff = (ca % 3 - cb % 3) % 3
        score = (both & (diff == 1)).sum(1) - (both & (diff == 2)).sum(1)
        p = np.where(score > 0, 1.0, np.where(score < 0, 0.0, 0.5))
        p = np.where(va & ~vb, 1.0, np.where(vb & ~va, 0.0, p))
        return np.where(~va & ~vb, 0.5, p)

    def preference_matrix(self, groups: Sequence[Sequence[str]], prompts: Sequence[str] | None = None) -> np.ndarray:
        """``[P, G, G]`` pairwise preferences within each group of ``G`` completions (SPO's input)."""
        g = len(groups[0])
        a = [x[i] for x in groups for i in range(g) for _ in range(g)]
        b = [x[j] for x in groups for _ in range(g) for j in range(g)]
        rep = None if prompts is None else [p for p in prompts for _ in range(g * g)]
        return self.preference(a, b, rep).reshape(len(groups), g, g)

    def as_reward_fn(self):
        """A ``RewardFn`` (prompts, completions, metadata -> list of floats) scoring the true reward."""
        def truth_reward(prompts: Sequence[str], completions: Sequence[str], metadata: Any = None) -> list[float]:
            return [float(x) for x in self.reward(completions, prompts)]
        return truth_reward


@dataclass(frozen=True)
class TaskTruth:
    """Correctness of answers to numeric task prompts (addition, multiplication, equation of
    :mod:`policyopt.lm.tasks`), graded: ``r = 1`` if right, ``-|y - y*| / (|y*| + 1)`` (>= -1) if wrong,
    ``-2`` if no number can be read. ``P(a > b)`` is 1/0.5/0 by comparing rewards. Prompt-aware:
    every method takes the prompts; ``metadata`` maps each prompt to its example's metadata."""

    metadata: Mapping[str, Mapping[str, Any]]
    max_len: int = 24
    kind: str = "task"
    alphabet: str = ""
    min_len: int = 1

    def _answers(self, completions: Sequence[str], prompts: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
        from policyopt.lm.rewards import extract_answer
        from policyopt.lm.tasks import parse_number

        if prompts is None or len(prompts) != len(completions):
            raise ValueError("TaskTruth needs one prompt per completion")
        got = np.full(len(completions), np.nan)
        want = np.empty(len(completions))
        for i, (p, c) in enumerate(zip(prompts, completions)):
            if p not in self.metadata:
                raise KeyError(f"TaskTruth: unknown prompt {p!r}")
            want[i] = float(parse_number(str(self.metadata[p]["answer"])))
            x = parse_number(extract_answer(c))
            got[i] = np.nan if x is None else float(x)
        return got, want

    def valid(self, completions: Sequence[str], prompts: Sequence[str] | None = None) -> np.ndarray:
        return np.isfinite(self._answers(completions, prompts)[0])

    def reward(self, completions: Sequence[str], prompts: Sequence[str] | None = None) -> np.ndarray:
        got, want = self._answers(completions, prompts)
        wrong = -np.minimum(np.abs(np.nan_to_num(got) - want) / (np.abs(want) + 1.0), 1.0)
        return np.where(~np.isfinite(got), -2.0, np.where(got == want, 1.0, wrong))

    def preference(self, a: Sequence[str], b: Sequence[str], prompts: Sequence[str] | None = None) -> np.ndarray:
        d = self.reward(a, prompts) - self.reward(b, prompts)
        return np.where(d > 0, 1.0, np.where(d < 0, 0.0, 0.5))

    preference_matrix = GroundTruth.preference_matrix
    as_reward_fn = GroundTruth.as_reward_fn


@configclass
class SyntheticConfig:
    """Synthetic preference data over task prompts with a known :class:`GroundTruth`."""

    kind: Literal["utility", "cyclic", "task"] = "utility"
    """``utility`` (hidden per-character utility), ``cyclic`` (rock-paper-scissors) or ``task`` (graded
    correctness of ``<answer>`` completions to numeric task prompts, :class:`TaskTruth`)."""
    num_prompts: Annotated[int, pydantic.Field(ge=1)] = 512
    """Pairs (or lists): one per prompt."""
    task: str = "addition"
    """Task family whose prompts are used (``policyopt.lm.tasks.TASKS``)."""
    task_params: dict[str, Any] = dataclasses.field(default_factory=lambda: {"max_digits": 2})
    """Difficulty knobs of the task family (only the prompts are used)."""
    alphabet: str = "abcdef"
    """Completion characters (single tokens of the character tokenizer)."""
    min_len: Annotated[int, pydantic.Field(ge=1)] = 2
    """Shortest completion (characters)."""
    max_len: Annotated[int, pydantic.Field(ge=1)] = 4
    """Longest completion (characters)."""
    behaviour: tuple[float, ...] = ()
    """Character probabilities of the behaviour policy that wrote the candidates (empty: uniform)."""
    temperature: Annotated[float, pydantic.Field(ge=0)] = 0.0
    """Bradley-Terry temperature of the true preference (0: deterministic)."""
    sample_labels: bool = False
    """Draw each label from the true preference probability (else: the more likely side)."""
    flip_rate: Annotated[float, pydantic.Field(ge=0, lt=0.5)] = 0.0
    """Probability of flipping each label after labelling (label noise)."""
    list_size: Annotated[int, pydantic.Field(ge=2)] = 4
    """Completions per prompt for ranked lists."""
    split: Literal["train", "eval"] = "train"
    """Which split of the task prompts to draw (the eval split is disjoint)."""
    seed: Annotated[int, pydantic.Field(ge=0)] = 0
    """Seed of prompts, candidates, labels and noise (the truth uses ``truth_seed``)."""
    truth_seed: Annotated[int, pydantic.Field(ge=0)] = 0
    """Seed of the hidden utility permutation (the same truth across data seeds and splits)."""


def make_truth(cfg: SyntheticConfig) -> GroundTruth | TaskTruth:
    if cfg.kind == "task":
        return TaskTruth({ex.prompt: ex.metadata for split in ("train", "eval") for ex in _task_examples(cfg, split)})
    if cfg.min_len > cfg.max_len:
        raise ValueError(f"synthetic: min_len={cfg.min_len} > max_len={cfg.max_len}")
    if len(set(cfg.alphabet)) != len(cfg.alphabet) or len(cfg.alphabet) < 3 or not cfg.alphabet.isascii():
        raise ValueError(f"synthetic.alphabet must be >= 3 distinct ASCII characters, got {cfg.alphabet!r}")
    a = len(cfg.alphabet)
    utility = np.random.default_rng([cfg.truth_seed, 7]).permutation(np.linspace(-1.0, 1.0, a))
    return GroundTruth(cfg.kind, cfg.alphabet, utility, cfg.min_len, cfg.max_len, cfg.temperature)


def _task_examples(cfg: SyntheticConfig, split: str, n: int | None = None) -> list[Any]:
    from policyopt.lm.tasks import generate

    if cfg.kind == "task" and cfg.task not in ("addition", "multiplication", "equation"):
        raise ValueError(f"synthetic.kind 'task' needs a numeric task (addition, multiplication, equation), "
                         f"got {cfg.task!r}")
    count = n or (max(cfg.num_prompts, 256) if cfg.kind == "task" else cfg.num_prompts)
    return generate(cfg.task, count, split, cfg.seed, False, **cfg.task_params)


def synthetic_prompts(cfg: SyntheticConfig, n: int | None = None, split: str | None = None) -> list[str]:
    """Prompts of the task family (``split`` defaults to the config's); task truths know their answers."""
    if cfg.kind == "task":
        return [ex.prompt for ex in _task_examples(cfg, split or cfg.split)][:n or cfg.num_prompts]
    return [ex.prompt for ex in _task_examples(cfg, split or cfg.split, n or cfg.num_prompts)]


def task_candidates(truth: TaskTruth, prompts: Sequence[str], rng: np.random.Generator,
                    p_correct: float = 0.3) -> list[str]:
    """``<answer>`` completions: the right answer with probability ``p_correct``, else off by 1-10."""
    from policyopt.lm.tokenizer import ANSWER_CLOSE, ANSWER_OPEN

    out = []
    for p in prompts:
        answer = int(truth.metadata[p]["answer"])
        delta = 0 if rng.random() < p_correct else int(rng.integers(1, 11)) * (1 if rng.random() < 0.5 else -1)
        out.append(f"{ANSWER_OPEN}{answer + delta}{ANSWER_CLOSE}")
    return out


def behaviour_completions(cfg: SyntheticConfig, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` candidates from the behaviour policy (lengths uniform, characters i.i.d.)."""
    a = len(cfg.alphabet)
    probs = np.full(a, 1.0 / a) if not cfg.behaviour else np.asarray(cfg.behaviour, dtype=np.float64)
    if probs.shape != (a,) or np.any(probs < 0) or not np.isclose(probs.sum(), 1.0):
        raise ValueError(f"synthetic.behaviour must be {a} probabilities summing to 1, got {cfg.behaviour}")
    lengths = rng.integers(cfg.min_len, cfg.max_len + 1, size=n)
    chars = rng.choice(a, size=(n, cfg.max_len), p=probs)
    letters = np.frombuffer(cfg.alphabet.encode(), dtype=np.uint8)[chars]
    return [letters[i, :lengths[i]].tobytes().decode() for i in range(n)]


def synthetic_pairs(cfg: SyntheticConfig) -> tuple[PreferenceRecords, GroundTruth]:
    """One labelled pair per prompt, candidates from the behaviour policy, labels from the truth
    (deterministic, or sampled when ``sample_labels``; ties broken at random) then flipped with
    probability ``flip_rate``. ``true_prob`` is the truth's ``P(chosen > rejected)``."""
    truth = make_truth(cfg)
    rng = np.random.default_rng([cfg.seed, 11])
    prompts = synthetic_prompts(cfg)
    n = len(prompts)
    if cfg.kind == "task":
        a, b = task_candidates(truth, prompts, rng), task_candidates(truth, prompts, rng)
    else:
        a, b = behaviour_completions(cfg, n, rng), behaviour_completions(cfg, n, rng)
    p = truth.preference(a, b, prompts)
    u = rng.random(n)
    a_wins = u < p if cfg.sample_labels else np.where(p == 0.5, u < 0.5, p > 0.5)
    flipped = rng.random(n) < cfg.flip_rate
    a_wins = a_wins ^ flipped
    chosen = [x if w else y for x, y, w in zip(a, b, a_wins)]
    rejected = [y if w else x for x, y, w in zip(a, b, a_wins)]
    true_prob = np.where(a_wins, p, 1.0 - p)
    from policyopt.data.preference import PreferenceRecords

    return PreferenceRecords(prompts, chosen, rejected, true_prob, flipped), truth


def synthetic_lists(cfg: SyntheticConfig) -> tuple[RankedRecords, GroundTruth]:
    """``list_size`` candidates per prompt with graded labels: the true reward (``utility``) or the
    Copeland score within the list (``cyclic``: wins minus losses against the other candidates)."""
    truth = make_truth(cfg)
    rng = np.random.default_rng([cfg.seed, 13])
    prompts = synthetic_prompts(cfg)
    k = cfg.list_size
    rep = [p for p in prompts for _ in range(k)]
    flat = task_candidates(truth, rep, rng) if cfg.kind == "task" else behaviour_completions(cfg, len(rep), rng)
    groups = [flat[i * k:(i + 1) * k] for i in range(len(prompts))]
    if truth.kind in ("utility", "task"):
        labels = truth.reward(flat, rep).reshape(len(prompts), k)
    else:
        labels = (2.0 * truth.preference_matrix(groups) - 1.0).sum(-1)
    from policyopt.data.preference import RankedRecords

    return RankedRecords(prompts, groups, labels.tolist()), truth



__all__ = ["GroundTruth", "SyntheticConfig", "TaskTruth", "behaviour_completions", "make_truth", "synthetic_lists",
           "synthetic_pairs", "synthetic_prompts", "task_candidates"]
