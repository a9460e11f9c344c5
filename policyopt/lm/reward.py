"""The reward-function protocol shared by every language-model method, and the guard around it.

A reward function scores a batch of completions. It returns one value per completion; ``None`` or
NaN means *unscorable* (for example: the sandbox failed, the judge timed out). Unscorable
completions are masked out of the loss and counted; they are never silently scored 0.

Every reward function runs behind a :class:`RewardGuard`, which returns a typed
:class:`RewardResult` (``values`` float tensor with NaN at unscorable entries, ``scorable`` bool
mask, per-component values, counters). Documented outcomes, per returned entry:

=====================================  ======================================================
the function returns / does            outcome
=====================================  ======================================================
a real number (int, float, bool,       scored (bool counts as 0/1)
numpy scalar, 0-d tensor), finite
``None`` or NaN                        unscorable, counted in ``num_none``
+/-inf                                 unscorable, counted in ``num_errors`` and logged
anything else (``"1.0"``, a list ...)  unscorable, counted in ``num_errors`` and logged
raises an exception                    the batch is retried one example at a time (default):
                                       the examples that raise are unscorable, counted in
                                       ``num_errors``, logged with the exception
the wrong number of values, or not a   :class:`RewardFnError` at once (a contract bug that no
sequence (a scalar, a string, a dict)  mask can fix); the message names the function
=====================================  ======================================================

After each call the guard checks the error rate (``num_errors`` / examples) over the last
``window_examples`` examples and raises :class:`RewardGuardAbort` once it passes
``max_error_rate`` (after at least ``min_examples``). ``guard.unscorable_fraction`` and
``result.metrics()`` expose the unscorable fraction for logging.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol, runtime_checkable

import numpy as np
import pydantic
import torch

from policyopt.core.config import configclass

logger = logging.getLogger("policyopt.lm.reward")


@runtime_checkable
class RewardFn(Protocol):
    """``fn(prompts, completions, metadata) -> list[float | None]`` (one entry per completion)."""

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        metadata: Sequence[Mapping[str, Any]],
    ) -> Sequence[float | None]: ...


OK, NONE, INVALID, NONFINITE, EXCEPTION = 0, 1, 2, 3, 4
"""Per-example outcome codes of a guarded call (larger = worse)."""
OUTCOME_NAMES = {OK: "ok", NONE: "none_or_nan", INVALID: "non_numeric", NONFINITE: "infinite",
                 EXCEPTION: "exception"}


class RewardFnError(ValueError):
    """A reward function broke its contract in a way no mask can fix (wrong output length or
    container type); the message names the function and what it returned."""


class RewardGuardAbort(RuntimeError):
    """Too many reward-function errors: the recent error rate passed ``max_error_rate``."""


@configclass
class RewardGuardConfig:
    max_error_rate: Annotated[float, pydantic.Field(ge=0, le=1)] = 0.1
    """Abort once errors (exceptions, non-numeric or infinite values) exceed this fraction of the
    examples in the recent window. None/NaN are not errors (see ``max_unscorable_rate``)."""
    max_unscorable_rate: Annotated[float, pydantic.Field(ge=0, le=1)] = 1.0
    """Abort once unscorable examples of any kind exceed this fraction of the window (1.0: never)."""
    min_examples: Annotated[int, pydantic.Field(ge=1)] = 64
    """No abort before the window holds at least this many examples."""
    window_examples: Annotated[int, pydantic.Field(ge=1)] = 2048
    """The rates are measured over (about) the last this-many examples."""
    isolate_errors: bool = True
    """When a batched call raises, retry example by example so one bad example does not void the batch."""
    log_examples: Annotated[int, pydantic.Field(ge=0)] = 3
    """Offending examples logged (WARNING, logger ``policyopt.lm.reward``) per call."""


@dataclass(frozen=True)
class RewardResult:
    """Guarded rewards of one batch of ``B`` completions.

    ``values``: ``[B]`` float32, NaN where unscorable (use ``scorable`` or :meth:`filled`, never the
    raw NaNs). ``scorable``: ``[B]`` bool. ``components``: name -> ``[B]`` float32 (for a
    :class:`~policyopt.lm.rewards.CompositeReward`, the unweighted component values; otherwise
    ``{"reward": values}``). ``outcome``: ``[B]`` int8 codes (``OUTCOME_NAMES``).
    """

    values: torch.Tensor
    scorable: torch.Tensor
    components: dict[str, torch.Tensor]
    outcome: torch.Tensor
    num_none: int
    num_errors: int

    @property
    def num_unscorable(self) -> int:
        return int((~self.scorable).sum())

    @property
    def unscorable_fraction(self) -> float:
        return self.num_unscorable / max(1, self.scorable.numel())

    def filled(self, value: float = 0.0) -> torch.Tensor:
        """``values`` with unscorable entries replaced by ``value`` (explicitly chosen by the caller)."""
        return torch.where(self.scorable, self.values, torch.as_tensor(value, dtype=self.values.dtype))

    def metrics(self, prefix: str = "reward") -> dict[str, float]:
        """Scalar metrics: mean over scorable entries, per-component means, unscorable/error fractions."""
        out = {f"{prefix}/unscorable_frac": self.unscorable_fraction,
               f"{prefix}/error_frac": self.num_errors / max(1, self.scorable.numel())}
        for name, vals in {"mean": self.values, **self.components}.items():
            ok = ~torch.isnan(vals)
            key = f"{prefix}/{name}" if name == "mean" else f"{prefix}/component/{name}"
            out[key] = float(vals[ok].mean()) if bool(ok.any()) else float("nan")
        return out


def _convert(value: Any) -> tuple[float, int]:
    """One returned entry -> (float, outcome code)."""
    if value is None:
        return math.nan, NONE
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if value.ndim != 0 or not (value.dtype.is_floating_point if isinstance(value, torch.Tensor)
                                   else np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_):
            return math.nan, INVALID
        value = value.item()
    if not isinstance(value, numbers.Real):
        return math.nan, INVALID
    value = float(value)
    if math.isnan(value):
        return math.nan, NONE
    return (value, OK) if math.isfinite(value) else (math.nan, NONFINITE)


def _fn_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


@dataclass
class _Window:
    """Recent per-call counts for the rate checks."""

    size: int
    calls: deque = field(default_factory=deque)

    def add(self, n: int, errors: int, unscorable: int) -> tuple[int, float, float]:
        self.calls.append((n, errors, unscorable))
        while len(self.calls) > 1 and sum(c[0] for c in self.calls) - self.calls[0][0] >= self.size:
            self.calls.popleft()
        total = sum(c[0] for c in self.calls)
        return total, sum(c[1] for c in self.calls) / total, sum(c[2] for c in self.calls) / total


class RewardGuard:
    """Wraps ANY reward function (see the module docstring for the contract and outcomes).

    ``guard(prompts, completions, metadata) -> RewardResult``. Running totals: ``total_examples``,
    ``total_none``, ``total_errors``, ``total_unscorable``; ``recent_errors`` keeps the last 50
    offending examples (index, outcome, prompt, completion, value or exception) for inspection.
    """

    def __init__(self, fn: Any, config: RewardGuardConfig | None = None, name: str | None = None):
        if not callable(fn):
            raise TypeError(f"reward function must be callable, got {type(fn).__name__}")
        self.fn, self.config, self.name = fn, config or RewardGuardConfig(), name or _fn_name(fn)
        self.total_examples = self.total_none = self.total_errors = self.total_unscorable = 0
        self.recent_errors: deque[dict[str, Any]] = deque(maxlen=50)
        self._window = _Window(self.config.window_examples)

    @property
    def unscorable_fraction(self) -> float:
        """Fraction of all examples seen so far that were unscorable."""
        return self.total_unscorable / max(1, self.total_examples)

    def metrics(self, prefix: str = "reward") -> dict[str, float]:
        return {f"{prefix}/total_unscorable_frac": self.unscorable_fraction,
                f"{prefix}/total_errors": float(self.total_errors)}

    def __call__(self, prompts: Sequence[str], completions: Sequence[str],
                 metadata: Sequence[Mapping[str, Any]] | None = None) -> RewardResult:
        n = len(completions)
        metadata = [{} for _ in range(n)] if metadata is None else metadata
        if len(prompts) != n or len(metadata) != n:
            raise ValueError(f"reward inputs differ in length: {len(prompts)} prompts, {n} completions, "
                             f"{len(metadata)} metadata")
        parts = self._parts()
        comps, codes = {}, np.zeros(n, dtype=np.int8)
        total = np.zeros(n, dtype=np.float64)
        for cname, (fn, weight) in parts.items():
            vals, c = self._score(fn, cname, prompts, completions, metadata)
            comps[cname] = torch.from_numpy(vals.astype(np.float32))
            codes = np.maximum(codes, c)
            total += weight * np.where(c == OK, vals, 0.0)
        scorable = codes == OK
        total[~scorable] = np.nan
        result = RewardResult(values=torch.from_numpy(total.astype(np.float32)),
                              scorable=torch.from_numpy(scorable), components=comps,
                              outcome=torch.from_numpy(codes), num_none=int((codes == NONE).sum()),
                              num_errors=int((codes >= INVALID).sum()))
        self._account(result, n)
        return result

    def _parts(self) -> dict[str, tuple[Any, float]]:
        from policyopt.lm.rewards import CompositeReward

        if isinstance(self.fn, CompositeReward):
            return {k: (f, self.fn.weight(k)) for k, f in self.fn.components.items()}
        return {"reward": (self.fn, 1.0)}

    def _score(self, fn: Any, cname: str, prompts: Sequence[str], completions: Sequence[str],
               metadata: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Values ``[B]`` float64 and outcome codes ``[B]`` int8 of one function."""
        name = self.name if cname == "reward" else f"{self.name}.{cname}"
        try:
            raw = self._checked(fn, name, prompts, completions, metadata)
        except RewardFnError:
            raise
        except Exception as err:  # noqa: BLE001 - any user error becomes "unscorable", logged
            if not self.config.isolate_errors or len(completions) == 1:
                vals, codes = np.full(len(completions), np.nan), np.full(len(completions), EXCEPTION, np.int8)
                self._log(name, range(len(completions)), codes, prompts, completions, [err] * len(completions))
                return vals, codes
            return self._one_by_one(fn, name, prompts, completions, metadata)
        pairs = [_convert(v) for v in raw]
        vals = np.array([p[0] for p in pairs], dtype=np.float64)
        codes = np.array([p[1] for p in pairs], dtype=np.int8)
        self._log(name, np.flatnonzero(codes >= INVALID), codes, prompts, completions, list(raw))
        return vals, codes

    def _checked(self, fn: Any, name: str, prompts: Sequence[str], completions: Sequence[str],
                 metadata: Sequence[Mapping[str, Any]]) -> Sequence[Any]:
        out = fn(prompts, completions, metadata)
        if isinstance(out, (torch.Tensor, np.ndarray)):
            if out.ndim != 1:
                raise RewardFnError(f"reward function {name} returned an array of shape {tuple(out.shape)}; "
                                    f"expected shape ({len(completions)},)")
            out = list(out)
        elif isinstance(out, (str, bytes, Mapping)) or not isinstance(out, Sequence):
            raise RewardFnError(f"reward function {name} returned {type(out).__name__}; expected a sequence "
                                f"of {len(completions)} floats (None for unscorable)")
        if len(out) != len(completions):
            raise RewardFnError(f"reward function {name} returned {len(out)} values for {len(completions)} "
                                f"completions; it must return exactly one per completion")
        return out

    def _one_by_one(self, fn: Any, name: str, prompts: Sequence[str], completions: Sequence[str],
                    metadata: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        vals, codes = np.full(len(completions), np.nan), np.zeros(len(completions), np.int8)
        for i in range(len(completions)):
            v, c = self._score(fn, name, [prompts[i]], [completions[i]], [metadata[i]])
            vals[i], codes[i] = v[0], c[0]
        return vals, codes

    def _log(self, name: str, indices: Any, codes: np.ndarray, prompts: Sequence[str],
             completions: Sequence[str], details: Sequence[Any]) -> None:
        for k, i in enumerate(indices):
            if codes[i] < INVALID:
                continue
            record = {"reward_fn": name, "index": int(i), "outcome": OUTCOME_NAMES[int(codes[i])],
                      "prompt": str(prompts[i])[:200], "completion": str(completions[i])[:200],
                      "detail": repr(details[i])[:300]}
            self.recent_errors.append(record)
            if k < self.config.log_examples:
                logger.warning("reward function %s: example %d is unscorable (%s: %s); prompt=%r completion=%r",
                               name, i, record["outcome"], record["detail"], record["prompt"],
                               record["completion"])

    def _account(self, result: RewardResult, n: int) -> None:
        self.total_examples += n
        self.total_none += result.num_none
        self.total_errors += result.num_errors
        self.total_unscorable += result.num_unscorable
        seen, err_rate, uns_rate = self._window.add(n, result.num_errors, result.num_unscorable)
        if seen < self.config.min_examples:
            return
        c = self.config
        if err_rate > c.max_error_rate or uns_rate > c.max_unscorable_rate:
            last = self.recent_errors[-1] if self.recent_errors else None
            which = (f"error rate {err_rate:.1%} > max_error_rate {c.max_error_rate:.1%}"
                     if err_rate > c.max_error_rate
                     else f"unscorable rate {uns_rate:.1%} > max_unscorable_rate {c.max_unscorable_rate:.1%}")
            raise RewardGuardAbort(f"reward function {self.name}: {which} over the last {seen} examples "
                                   f"(errors = exceptions, non-numeric or infinite values). Last offending "
                                   f"example: {last}")
