"""Built-in reward functions (each a :class:`~policyopt.lm.reward.RewardFn`).

- :class:`AnswerMatch` — 1.0 if the extracted answer equals the reference (``exact`` or ``numeric``),
  else 0.0. The answer is taken from the last ``<answer>...</answer>``, else the last
  ``\\boxed{...}``, else the whole completion (:func:`extract_answer`).
- :class:`TaskCorrectness` — 1.0/0.0 by the task's own checker (:func:`policyopt.lm.tasks.check_answer`:
  countdown expressions are verified, arithmetic compared numerically, the rest exactly).
- :class:`FormatReward` — 1.0 if the completion matches a regex and contains every required tag.
- :class:`LengthPenalty` — ``-coef * max(0, len - target) / target`` (characters or tokens).
- :class:`CompositeReward` — ``sum_k w_k r_k``; run behind :class:`~policyopt.lm.reward.RewardGuard`,
  every component is guarded and reported separately (``RewardResult.components``).

Reference answers come from ``metadata[answer_key]`` (default ``"answer"``). A missing reference is
an unscorable result (``None``), not a zero.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from policyopt.lm.tasks import check_answer, parse_number

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_BOXED = "\\boxed{"


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (nested braces balanced), or None."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, i = 1, start + len(_BOXED)
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def extract_answer(text: str) -> str:
    """The answer inside the last ``<answer>`` tags, else the last ``\\boxed{}``, else the stripped text.

    A ``\\boxed{}`` inside the answer tags is unwrapped too: ``<answer>\\boxed{7}</answer>`` -> ``7``.
    """
    tagged = _ANSWER_RE.findall(text)
    if tagged:
        text = tagged[-1]
    boxed = last_boxed(text)
    return (boxed if boxed is not None else text).strip()


def normalize_text(text: str) -> str:
    """Collapse whitespace and strip ``$`` delimiters and a trailing period."""
    text = " ".join(text.replace("$", "").split())
    return text[:-1] if text.endswith(".") else text


@dataclass(frozen=True)
class AnswerMatch:
    """1.0 when ``extract_answer(completion)`` matches ``metadata[answer_key]``, else 0.0.

    ``mode="exact"`` compares :func:`normalize_text` strings; ``mode="numeric"`` parses both as exact
    rationals (``1,234``, ``-3.50``, ``7/2``) and compares with ``abs_tol``; an unparsable reference
    is unscorable (None), an unparsable completion scores 0.
    """

    mode: Literal["exact", "numeric"] = "exact"
    answer_key: str = "answer"
    abs_tol: float = 0.0

    def __call__(self, prompts: Sequence[str], completions: Sequence[str],
                 metadata: Sequence[Mapping[str, Any]]) -> list[float | None]:
        return [self._one(c, m) for c, m in zip(completions, metadata)]

    def _one(self, completion: str, meta: Mapping[str, Any]) -> float | None:
        if meta.get(self.answer_key) is None:
            return None
        got, want = extract_answer(completion), str(meta[self.answer_key])
        if self.mode == "exact":
            return float(normalize_text(got) == normalize_text(extract_answer(want)))
        want_num = parse_number(extract_answer(want))
        if want_num is None:
            return None
        got_num = parse_number(got)
        return float(got_num is not None and abs(float(got_num - want_num)) <= self.abs_tol)


@dataclass(frozen=True)
class TaskCorrectness:
    """1.0/0.0 by :func:`policyopt.lm.tasks.check_answer` on the extracted answer (needs ``metadata["task"]``)."""

    def __call__(self, prompts: Sequence[str], completions: Sequence[str],
                 metadata: Sequence[Mapping[str, Any]]) -> list[float | None]:
        return [None if "answer" not in m and m.get("task") != "countdown"
                else float(check_answer(extract_answer(c), m)) for c, m in zip(completions, metadata)]


@dataclass(frozen=True)
class FormatReward:
    """1.0 if the completion matches ``pattern`` (``re.fullmatch`` after stripping, DOTALL) and
    contains each tag of ``required_tags`` as an opening+closing pair, in order; else 0.0."""

    pattern: str | None = None
    required_tags: tuple[str, ...] = ("answer",)

    def __post_init__(self) -> None:
        if self.pattern is not None:
            re.compile(self.pattern)  # fail early with re.error naming the problem

    def __call__(self, prompts: Sequence[str], completions: Sequence[str],
                 metadata: Sequence[Mapping[str, Any]]) -> list[float | None]:
        regex = re.compile(self.pattern, re.DOTALL) if self.pattern is not None else None
        tag_res = [re.compile(rf"<{re.escape(t)}>.*?</{re.escape(t)}>", re.DOTALL) for t in self.required_tags]
        out: list[float | None] = []
        for text in completions:
            ok = regex is None or regex.fullmatch(text.strip()) is not None
            out.append(float(ok and all(r.search(text) for r in tag_res)))
        return out


@dataclass(frozen=True)
class LengthPenalty:
    """``-coef * max(0, length - target) / target``: zero up to ``target``, linear beyond it.

    ``length`` is the completion's character count, or its token count when ``tokenizer`` is given.
    """

    target: int = 64
    coef: float = 1.0
    tokenizer: Any = None

    def __post_init__(self) -> None:
        if self.target <= 0:
            raise ValueError(f"LengthPenalty.target must be > 0, got {self.target}")

    def __call__(self, prompts: Sequence[str], completions: Sequence[str],
                 metadata: Sequence[Mapping[str, Any]]) -> list[float | None]:
        if self.tokenizer is not None:
            lengths = [len(ids) for ids in self.tokenizer(list(completions), add_special_tokens=False)["input_ids"]]
        else:
            lengths = [len(c) for c in completions]
        return [-self.coef * max(0, n - self.target) / self.target for n in lengths]


RewardCallable = Callable[[Sequence[str], Sequence[str], Sequence[Mapping[str, Any]]], Sequence[Any]]


@dataclass(frozen=True)
class CompositeReward:
    """Weighted sum ``sum_k weights[k] * components[k]`` of named reward functions.

    Called directly it returns the totals (None where any component is None/NaN). Wrapped in a
    :class:`~policyopt.lm.reward.RewardGuard`, each component is guarded on its own and reported in
    ``RewardResult.components``; a completion is scorable only if every component scored it.
    """

    components: Mapping[str, RewardCallable]
    weights: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.components:
            raise ValueError("CompositeReward needs at least one component")
        unknown = set(self.weights) - set(self.components)
        if unknown:
            raise KeyError(f"CompositeReward weights for unknown components {sorted(unknown)}")

    def weight(self, name: str) -> float:
        return float(self.weights.get(name, 1.0))

    @property
    def last_metrics(self) -> dict[str, float]:
        """The components' own last-batch metrics (e.g. a code reward's verdict fractions), merged."""
        out: dict[str, float] = {}
        for fn in self.components.values():
            out.update(getattr(fn, "last_metrics", None) or {})
        return out

    def __call__(self, prompts: Sequence[str], completions: Sequence[str],
                 metadata: Sequence[Mapping[str, Any]]) -> list[float | None]:
        totals: list[float | None] = [0.0] * len(completions)
        for name, fn in self.components.items():
            for i, v in enumerate(fn(prompts, completions, metadata)):
                if totals[i] is None or v is None or v != v:
                    totals[i] = None
                else:
                    totals[i] += self.weight(name) * float(v)
        return totals


def default_task_reward(format_weight: float = 0.1) -> CompositeReward:
    """Correctness (weight 1) + answer-tag format (``format_weight``): the reward used for the built-in tasks."""
    return CompositeReward({"correct": TaskCorrectness(), "format": FormatReward()},
                           {"correct": 1.0, "format": format_weight})
