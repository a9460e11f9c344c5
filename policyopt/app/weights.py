"""``--init-from``: start a new run from the learned weights of another run, for every algorithm.

An algorithm names where its weights sit in its ``state_dict()`` (``weight_keys``, dotted paths such
as ``"learner.net"``); only those subtrees are copied, the rest of the new run (optimiser, counters,
RNGs, replay, data order) starts fresh. A checkpoint of another algorithm or another architecture is
refused with an error that names the path and the mismatch; the new run is left untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from policyopt.core.config import ConfigError
from policyopt.runtime import checkpoint as ckpt


def _get(tree: Any, path: str, where: str) -> Any:
    node = tree
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise ConfigError(f"--init-from: {where} has no weights at {path!r} (it was written by another "
                              "algorithm?)")
        node = node[key]
    return node


def init_weights(algorithm: Any, source: str | Path) -> list[str]:
    """Copy ``algorithm.weight_keys`` from the checkpoint (or run dir) ``source``; returns the paths copied."""
    paths = getattr(algorithm, "weight_keys", None)
    if not paths:
        raise ConfigError(f"--init-from: {type(algorithm).__name__} has no learned weights to start from")
    tree, _ = ckpt.load_checkpoint(source)
    saved = tree.get("algorithm", {})
    state = algorithm.state_dict()
    for path in paths:
        value = _get(saved, path, str(source))
        *head, last = path.split(".")
        node = state
        for key in head:
            node = node[key]
        node[last] = value
    try:
        algorithm.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as err:
        raise ConfigError(f"--init-from: the weights in {source} do not fit this {type(algorithm).__name__}: "
                          f"{str(err).splitlines()[0]}") from None
    return list(paths)
