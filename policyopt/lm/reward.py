"""The reward-function protocol shared by every language-model method.

A reward function scores a batch of completions. It returns one value per completion; ``None`` or
NaN means *unscorable* (for example: the sandbox failed, the judge timed out). Unscorable
completions are masked out of the loss and counted; they are never silently scored 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class RewardFn(Protocol):
    """``fn(prompts, completions, metadata) -> list[float | None]`` (one entry per completion)."""

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        metadata: Sequence[Mapping[str, Any]],
    ) -> Sequence[float | None]: ...
