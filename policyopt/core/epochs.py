"""The one seeded epoch iterator: every collector that walks a finite pool (preference pairs, SFT pairs,
prompts) draws its indices here, so "epoch ``e`` visits ``default_rng([seed, e]).permutation(N)``, a
batch that crosses an epoch boundary continues into the next epoch" is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


class EpochIterator:
    """Indices into ``num_examples`` items, epoch by epoch, resumable exactly.

    ``order(epoch) -> permutation`` defaults to ``np.random.default_rng([seed, epoch]).permutation(N)``;
    a collector may pass its own (e.g. length-grouped batches) as long as it is a function of
    ``(seed, epoch)`` only. ``state_dict() = {seed, epoch, position, num_examples}``.
    """

    def __init__(self, num_examples: int, seed: int, order: Callable[[int], np.ndarray] | None = None,
                 owner: str = "collector"):
        if num_examples <= 0:
            raise ValueError(f"{owner}: nothing to iterate over (0 examples)")
        self.num_examples, self.seed, self.owner = int(num_examples), int(seed), owner
        self._order_fn = order or (lambda e: np.random.default_rng([self.seed, e]).permutation(self.num_examples))
        self.epoch, self.position = 0, 0
        self._order = self._order_fn(0)

    def take(self, k: int) -> np.ndarray:
        """The next ``k`` indices (int64), continuing into the next epoch when this one runs out."""
        parts, want = [], int(k)
        while want > 0:
            part = self._order[self.position:self.position + want]
            parts.append(part)
            want -= part.size
            self.position += part.size
            if self.position >= self.num_examples:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._order_fn(self.epoch)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position, "num_examples": self.num_examples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state.get("num_examples", self.num_examples)) != self.num_examples or int(state["seed"]) != self.seed:
            raise ValueError(f"{self.owner} state is for {state.get('num_examples')} examples / seed {state['seed']}; "
                             f"this {self.owner} has {self.num_examples} / seed {self.seed}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._order_fn(self.epoch)
