"""The verdict taxonomy of a sandboxed execution: what happened, not a float.

Every test (or raw run) ends in exactly one :class:`Verdict`. ``SANDBOX_ERROR`` is an
*infrastructure* failure (the sandbox could not start, the interpreter did not come up): the
candidate was never judged, so a reward built on it is *unscorable* (``None``), never 0.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable


class Verdict(str, enum.Enum):
    """Outcome of one test or run. ``str`` valued so it logs and serialises as its name."""

    PASS = "PASS"
    """Ran to completion and (for a test) the output matched exactly."""
    FAIL = "FAIL"
    """Ran to completion but the output was wrong, missing or forged."""
    TIMEOUT = "TIMEOUT"
    """Killed by the parent for exceeding the wall-clock or CPU-time budget."""
    MEMORY = "MEMORY"
    """Ran out of its address-space limit (``MemoryError``)."""
    RUNTIME_ERROR = "RUNTIME_ERROR"
    """Raised an exception, exited non-zero or died on a signal."""
    COMPILE_ERROR = "COMPILE_ERROR"
    """The source (Python or SQL) did not compile."""
    OUTPUT_LIMIT = "OUTPUT_LIMIT"
    """Wrote more than the byte cap to stdout/stderr, or filled its file-size / scratch-disk limit."""
    SANDBOX_ERROR = "SANDBOX_ERROR"
    """Infrastructure failure: the run says nothing about the candidate (unscorable)."""


SCORABLE: frozenset[Verdict] = frozenset(v for v in Verdict if v is not Verdict.SANDBOX_ERROR)
"""Verdicts that judge the candidate; only ``SANDBOX_ERROR`` is not one of them."""


def is_unscorable(verdicts: Iterable[Verdict]) -> bool:
    """True if any verdict is an infrastructure failure (the reward must be ``None``)."""
    return any(v is Verdict.SANDBOX_ERROR for v in verdicts)


def verdict_fractions(verdicts: Iterable[Verdict], prefix: str = "verdict/") -> dict[str, float]:
    """Fraction of each verdict, one key per member of :class:`Verdict` (zeros included).

    ``verdict_fractions([PASS, FAIL, PASS])`` -> ``{"verdict/pass": 0.667, "verdict/fail": 0.333, ...}``;
    an empty input gives all zeros. Meant for the per-step metrics dict of the trainer.
    """
    counts = Counter(Verdict(v) for v in verdicts)
    total = sum(counts.values())
    return {f"{prefix}{v.value.lower()}": (counts[v] / total if total else 0.0) for v in Verdict}
