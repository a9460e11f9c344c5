"""The small protocols that connect the pieces: algorithm, collector, evaluator.

The trainer (``policyopt.runtime.trainer``) knows nothing else about an algorithm. Everything it
checkpoints is a *state tree*: nested ``dict``/``list`` whose leaves are ``torch.Tensor``,
``numpy.ndarray`` or JSON scalars (``int``, ``float``, ``bool``, ``str``, ``None``). Tensors and
arrays go to safetensors, the rest to JSON; nothing is ever pickled.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

StateTree = dict[str, Any]


@runtime_checkable
class Algorithm(Protocol):
    """A config plus ``update(batch) -> metrics``; owns its parameters and optimizer state only."""

    def update(self, batch: Any) -> dict[str, float]:
        """One learning step on a batch; returns scalar metrics with the shared names
        (``loss/policy``, ``loss/value``, ``stats/approx_kl``, ``stats/clip_frac``, ...)."""
        ...

    def state_dict(self) -> StateTree: ...

    def load_state_dict(self, state: StateTree) -> None: ...


@runtime_checkable
class Collector(Protocol):
    """Turns a policy and a source (envs, prompts, offline data) into one typed batch."""

    def collect(self) -> Any:
        """Return the next batch. The batch has an int attribute ``num_steps``: the env steps
        (or samples) it consumed, which the trainer adds to its step counter."""
        ...

    def state_dict(self) -> StateTree: ...

    def load_state_dict(self, state: StateTree) -> None: ...


@runtime_checkable
class Evaluator(Protocol):
    """Scores the current policy without changing any training state (own envs, own RNG)."""

    def evaluate(self) -> dict[str, float]: ...
