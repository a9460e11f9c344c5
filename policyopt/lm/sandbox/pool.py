"""A worker pool that runs many sandboxed executions concurrently, bounded by the CPU cores.

Sandboxed runs are child processes, so threads are enough: each worker thread blocks in ``select``
while its sandbox computes; the GIL is not a bottleneck. Every run still gets its own dedicated uid,
namespace and limits.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Cores this process may use (``sched_getaffinity``), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class SandboxPool:
    """``pool.map(fn, items)`` runs ``fn(item)`` (a function that calls the sandbox) on ``workers``
    threads and keeps throughput statistics (``executions``, ``busy_s``, ``executions_per_s``)."""

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"SandboxPool.workers must be >= 1, got {workers}")
        self.workers = workers or default_workers()
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sandbox")
        self.executions = 0
        self.busy_s = 0.0

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """Results in input order; exceptions raised by ``fn`` propagate."""
        items = list(items)
        start = time.perf_counter()
        results = list(self._executor.map(fn, items))
        self.busy_s += time.perf_counter() - start
        self.executions += len(items)
        return results

    @property
    def executions_per_s(self) -> float:
        return self.executions / self.busy_s if self.busy_s > 0 else 0.0

    def stats(self) -> dict[str, float]:
        return {"sandbox/executions": float(self.executions), "sandbox/executions_per_s": self.executions_per_s,
                "sandbox/workers": float(self.workers)}

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def batched(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """Consecutive chunks of ``size`` (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    return [items[i:i + size] for i in range(0, len(items), size)]
