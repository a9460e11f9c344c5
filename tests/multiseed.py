"""Pass rules over several seeds for the learning tests.

One seed's training run is a chaotic function of float rounding: the same pinned torch gives other
bits on another x86 CPU (other SIMD kernels, other reduction orders), and a run that reached the
threshold here can miss it there. So a learning test never asserts on one seed: it runs seeds in
order and asserts that at least ``k`` of the ``n`` reach the threshold (``at_least``). Seeds are
run only until the verdict is known (k passes, or more than n - k failures), which gives exactly the
verdict of running all n and keeps the common case cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def at_least(k: int, seeds: Iterable[int], run: Callable[[int], Any], ok: Callable[[Any], bool],
             what: str = "") -> dict[int, Any]:
    """Assert that ``ok(run(seed))`` holds for at least ``k`` of ``seeds``; returns ``{seed: result}``
    of the seeds that were run."""
    seeds = list(seeds)
    if not 0 < k <= len(seeds):
        raise ValueError(f"k={k} of {len(seeds)} seeds")
    results: dict[int, Any] = {}
    passed = failed = 0
    for seed in seeds:
        results[seed] = value = run(seed)
        if ok(value):
            passed += 1
        else:
            failed += 1
        if passed >= k:
            return results
        if failed > len(seeds) - k:
            break
    raise AssertionError(f"{what}: {passed} of the seeds run passed, at least {k} of {len(seeds)} "
                         f"(seeds {seeds[0]}-{seeds[-1]}) must: {results}")
