"""Seeds and random-number-generator state as checkpointable state trees.

- :func:`seed_everything` seeds python ``random``, numpy's legacy global RNG and torch's global RNG.
- :func:`derive_seed` gives each consumer (envs, evaluation, action sampling, ...) its own
  independent, stable stream from one run seed, through numpy's ``SeedSequence`` (O'Neill 2015,
  "PCG: A family of simple fast space-efficient statistically good algorithms").
- :func:`capture_global_rng` / :func:`restore_global_rng` and :func:`generator_state` /
  :func:`set_generator_state` turn RNG state into state trees (arrays and JSON scalars; numpy's
  128-bit PCG64 words stay exact python ints) and back, so a resumed run draws the same numbers.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np
import torch

SEED_LIMIT = 2**32
AnyGenerator = torch.Generator | np.random.Generator | np.random.RandomState | random.Random


def _check_seed(seed: Any) -> int:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, (bool, np.bool_)) or not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    return int(seed)


def seed_everything(seed: int) -> None:
    """Seed python ``random``, ``numpy.random`` (legacy global) and torch (CPU and CUDA)."""
    seed = _check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the legacy global RNG is what third-party code uses
    torch.manual_seed(seed)


def _name_word(name: str | int) -> int:
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool) and name >= 0:
        return int(name)
    if isinstance(name, str):  # hashed, so "env" and "eval" give unrelated words
        return int.from_bytes(hashlib.sha256(b"name:" + name.encode()).digest()[:8], "little") + 2**64
    raise ValueError(f"derive_seed names must be str or non-negative int, got {name!r}")


def derive_seed(seed: int, *names: str | int) -> int:
    """A seed in ``[0, 2**32)`` for the stream ``names`` of run ``seed``; stable across versions
    and platforms. ``derive_seed(0, "env")``, ``derive_seed(0, "eval")`` and ``derive_seed(1, "env")``
    are unrelated; ``derive_seed(s, "env", 3)`` names a sub-stream."""
    words = [_check_seed(seed), *(_name_word(n) for n in names)]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint32)[0])


# ----------------------------------------------------------------------------- state trees


def _python_tree(state: tuple) -> dict:
    version, internal, gauss = state
    return {"version": version, "mt": np.array(internal, dtype=np.uint32), "gauss_next": gauss}


def _python_tuple(tree: dict) -> tuple:
    return (tree["version"], tuple(int(x) for x in tree["mt"]), tree["gauss_next"])


def _copy_tree(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _copy_tree(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_copy_tree(v) for v in x)
    return x.copy() if isinstance(x, np.ndarray) else x


def generator_state(g: AnyGenerator) -> dict:
    """State tree of one generator: ``torch.Generator``, ``numpy.random.Generator``,
    ``numpy.random.RandomState`` or ``random.Random``; ``{"kind": ..., "state": ...}``."""
    if isinstance(g, torch.Generator):
        return {"kind": "torch", "device": str(g.device), "state": g.get_state().clone()}
    if isinstance(g, np.random.Generator):
        return {"kind": "numpy", "state": _copy_tree(g.bit_generator.state)}
    if isinstance(g, np.random.RandomState):
        return {"kind": "numpy_random_state", "state": _copy_tree(g.get_state(legacy=False))}
    if isinstance(g, random.Random):
        return {"kind": "python", "state": _python_tree(g.getstate())}
    raise TypeError(f"generator_state: unsupported generator type {type(g).__qualname__}")


def _kind(g: Any) -> str:
    for cls, kind in ((torch.Generator, "torch"), (np.random.Generator, "numpy"),
                      (np.random.RandomState, "numpy_random_state"), (random.Random, "python")):
        if isinstance(g, cls):
            return kind
    raise TypeError(f"set_generator_state: unsupported generator type {type(g).__qualname__}")


def set_generator_state(g: AnyGenerator, tree: dict) -> None:
    """Restore a :func:`generator_state` tree into ``g`` (same kind, and same bit generator)."""
    kind = _kind(g)
    if not isinstance(tree, dict) or tree.get("kind") != kind:
        got = tree.get("kind") if isinstance(tree, dict) else type(tree).__name__
        raise ValueError(f"set_generator_state: state is for a {got!r} generator, target is {kind!r}")
    state = tree["state"]
    if kind == "torch":
        g.set_state(torch.as_tensor(state, dtype=torch.uint8).clone())
    elif kind == "numpy":
        have, want = type(g.bit_generator).__name__, state.get("bit_generator")
        if have != want:
            raise ValueError(f"set_generator_state: state is for bit generator {want!r}, target uses {have!r}")
        g.bit_generator.state = _copy_tree(state)
    elif kind == "numpy_random_state":
        g.set_state(_copy_tree(state))
    else:
        g.setstate(_python_tuple(state))


def new_generator(tree: dict) -> np.random.Generator | torch.Generator | np.random.RandomState | random.Random:
    """A fresh generator of the kind (and numpy bit generator) ``tree`` describes, set to that state."""
    kind = tree.get("kind") if isinstance(tree, dict) else None
    if kind == "torch":
        g: Any = torch.Generator(device=tree.get("device", "cpu"))
    elif kind == "numpy":
        g = np.random.Generator(getattr(np.random, tree["state"]["bit_generator"])())
    elif kind == "numpy_random_state":
        g = np.random.RandomState()
    elif kind == "python":
        g = random.Random()
    else:
        raise ValueError(f"new_generator: unknown generator kind {kind!r}")
    set_generator_state(g, tree)
    return g


def capture_global_rng() -> dict:
    """State of python ``random``, numpy's legacy global RNG and torch's global RNGs (CPU, CUDA)."""
    tree = {
        "python": _python_tree(random.getstate()),
        "numpy": _copy_tree(np.random.get_state(legacy=False)),  # noqa: NPY002
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        tree["torch_cuda"] = list(torch.cuda.get_rng_state_all())
    return tree


def restore_global_rng(tree: dict) -> None:
    """Restore :func:`capture_global_rng`; CUDA states are restored when present and CUDA is available."""
    random.setstate(_python_tuple(tree["python"]))
    np.random.set_state(_copy_tree(tree["numpy"]))  # noqa: NPY002
    torch.set_rng_state(torch.as_tensor(tree["torch"], dtype=torch.uint8).clone())
    cuda = tree.get("torch_cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            raise ValueError(f"checkpoint has RNG state for {len(cuda)} CUDA devices, "
                             f"this machine has {torch.cuda.device_count()}")
        torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8) for s in cuda])
