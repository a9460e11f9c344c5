"""Exact state of a Gymnasium environment (single or vector, with its wrappers) as a state tree.

:func:`get_env_state` captures everything needed to continue an environment bitwise: for a
``SyncVectorEnv`` each sub-env through its wrapper chain (``TimeLimit``'s elapsed steps,
``OrderEnforcing``, ``PassiveEnvChecker`` flags), the base env's physics state and ``np_random``, the
vector env's autoreset bookkeeping and buffers, and every action/observation space's RNG. Native
vector envs (``vector_entry_point``) are walked the same way. :func:`set_env_state` writes it into
an environment built the same way (``gymnasium.make_vec(id, n, ...)`` with the same arguments),
which need not have been reset.

How an object is captured:

- an object with ``state_dict()`` / ``load_state_dict()`` (policyopt's own vector envs) uses them,
  plus the RNGs of the spaces it holds;
- ``Env`` / ``Wrapper`` / ``VectorEnv`` / ``VectorWrapper`` / ``Space`` objects and the classes in
  :data:`WALKABLE_TYPES` are walked attribute by attribute (``vars(obj)``): arrays, numpy and python
  scalars, strings, ``None``, lists/tuples/dicts/deques of those, numpy/torch/python RNGs, dtypes,
  enums and nested walkable objects. Aliasing is kept (an object reached twice is stored once);
- functions, classes, ``EnvSpec`` and rendering objects (pygame windows, clocks, viewers) are
  construction-time or display state and are left as they are;
- anything else raises :class:`EnvStateError` naming the attribute path; the caller should then
  warn that resume cannot be exact. ``AsyncVectorEnv`` always raises: its state lives in
  subprocesses.
"""

from __future__ import annotations

import collections
import enum
import functools
import random
import types
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.envs.registration import EnvSpec
from gymnasium.vector import AsyncVectorEnv, VectorEnv, VectorWrapper
from gymnasium.wrappers.utils import RunningMeanStd

from policyopt.core.seeding import generator_state, new_generator, set_generator_state

FORMAT = "policyopt-envstate"
FORMAT_VERSION = 1
WALKABLE_TYPES: list[type] = [gymnasium.Env, gymnasium.Wrapper, VectorEnv, VectorWrapper, gymnasium.Space,
                              RunningMeanStd]
"""Classes walked attribute by attribute; append your own plain-python state holders here."""
_RNG_TYPES = (np.random.Generator, np.random.RandomState, random.Random, torch.Generator)
_CODE_TYPES = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, functools.partial, type)
_RENDER_NAMES = frozenset({"screen", "screens", "clock", "surf", "viewer", "viewers", "_viewers", "window",
                           "renderer", "mujoco_renderer"})
_RENDER_MODULES = ("pygame", "pyglet", "matplotlib", "OpenGL", "gymnasium.envs.mujoco.mujoco_rendering")
_KEEP = {"kind": "keep"}
_MISSING = object()


class EnvStateError(RuntimeError):
    """The environment's state cannot be captured or restored exactly; the message names the attribute."""


def _cls(x: Any) -> str:
    return f"{type(x).__module__}.{type(x).__qualname__}"


def _is_kept(x: Any) -> bool:
    return isinstance(x, (_CODE_TYPES, EnvSpec)) or type(x).__module__.startswith(_RENDER_MODULES)


def _has_state_dict(x: Any) -> bool:
    return callable(getattr(x, "state_dict", None)) and callable(getattr(x, "load_state_dict", None))


def _copy_tree(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _copy_tree(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_copy_tree(v) for v in x)
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    return x.copy() if isinstance(x, np.ndarray) else x


# ----------------------------------------------------------------------------- capture


class _Capture:
    def __init__(self) -> None:
        self.seen: dict[int, str] = {}  # id of a mutable object -> path where it was first stored

    def value(self, x: Any, path: str) -> Any:
        if isinstance(x, enum.Enum):
            return {"kind": "enum", "class": _cls(x), "name": x.name}
        if x is None or isinstance(x, (bool, int, float, str, np.generic)):
            return x
        if isinstance(x, np.dtype):
            return {"kind": "dtype", "str": x.str}
        if isinstance(x, tuple):
            return tuple(self.value(v, f"{path}[{i}]") for i, v in enumerate(x))
        if _is_kept(x):
            return _KEEP
        if isinstance(x, AsyncVectorEnv):
            raise EnvStateError(f"{path}: AsyncVectorEnv keeps its envs' state in subprocesses, which cannot "
                                "be captured; use vectorization 'sync' or 'vector_entry_point' for exact resume")
        if id(x) in self.seen:
            return {"kind": "ref", "path": self.seen[id(x)]}
        self.seen[id(x)] = path
        return self.mutable(x, path)

    def mutable(self, x: Any, path: str) -> Any:
        if isinstance(x, np.ndarray):
            if x.dtype.hasobject:
                raise EnvStateError(f"{path}: numpy arrays of Python objects cannot be captured")
            return x.copy()
        if isinstance(x, torch.Tensor):
            return x.detach().clone()
        if isinstance(x, _RNG_TYPES):
            return {"kind": "rng", "state": generator_state(x)}
        if isinstance(x, list):
            return [self.value(v, f"{path}[{i}]") for i, v in enumerate(x)]
        if isinstance(x, collections.deque):
            return {"kind": "deque", "maxlen": x.maxlen, "items": [self.value(v, f"{path}[{i}]")
                                                                  for i, v in enumerate(x)]}
        if isinstance(x, dict):
            bad = [k for k in x if not isinstance(k, (str, int)) or isinstance(k, bool)]
            if bad:
                raise EnvStateError(f"{path}: dict key {bad[0]!r} is not str or int")
            return {"kind": "dict", "items": [[k, self.value(v, f"{path}[{k!r}]")] for k, v in x.items()]}
        if _has_state_dict(x):
            return {"kind": "state_dict", "class": _cls(x), "state": _copy_tree(x.state_dict()),
                    "spaces": self.attrs(x, path, only_spaces=True)}
        if isinstance(x, tuple(WALKABLE_TYPES)):
            return {"kind": "object", "class": _cls(x), "attrs": self.attrs(x, path)}
        raise EnvStateError(f"{path}: cannot capture a {_cls(x)}; resume of this environment cannot be exact "
                            "(give the object state_dict()/load_state_dict(), or add its class to "
                            "policyopt.runtime.envstate.WALKABLE_TYPES if it holds plain data)")

    def attrs(self, x: Any, path: str, only_spaces: bool = False) -> dict[str, Any]:
        try:
            items = vars(x).items()
        except TypeError:
            raise EnvStateError(f"{path}: a {_cls(x)} has no __dict__ to walk") from None
        out = {}
        for name, v in items:
            if name in _RENDER_NAMES or (only_spaces and not isinstance(v, gymnasium.Space)):
                continue
            node = self.value(v, f"{path}.{name}")
            if node is not _KEEP:
                out[name] = node
        return out


def get_env_state(env: Any) -> dict:
    """A state tree that :func:`set_env_state` turns back into exactly this environment state.

    The tree is a snapshot (arrays copied): stepping ``env`` afterwards does not change it.
    Raises :class:`EnvStateError` naming the attribute that cannot be captured.
    """
    return {"format": FORMAT, "version": FORMAT_VERSION, "root": _Capture().value(env, "env")}


# ----------------------------------------------------------------------------- restore


class _Restore:
    def __init__(self) -> None:
        self.done: dict[str, Any] = {}  # path -> restored object, for references

    def value(self, live: Any, node: Any, path: str) -> Any:
        if isinstance(node, tuple):
            parts = live if isinstance(live, tuple) and len(live) == len(node) else (_MISSING,) * len(node)
            return tuple(self.value(lv, v, f"{path}[{i}]") for i, (lv, v) in enumerate(zip(parts, node)))
        if isinstance(node, list):
            out = self.sequence(live, node, path)
        elif isinstance(node, dict):
            kind = node.get("kind")
            if kind == "keep":
                return live
            if kind == "ref":
                if node["path"] not in self.done:
                    raise EnvStateError(f"{path}: reference to {node['path']} which was not restored before it")
                return self.done[node["path"]]
            out = self.node(live, node, kind, path)
        elif isinstance(node, np.ndarray):
            out = node.copy()
        elif isinstance(node, torch.Tensor):
            out = node.clone()
        else:
            return node
        self.done[path] = out
        return out

    def sequence(self, live: Any, node: list, path: str) -> list:
        same = isinstance(live, list) and len(live) == len(node)
        items = [self.value(live[i] if same else _MISSING, v, f"{path}[{i}]") for i, v in enumerate(node)]
        if same:
            live[:] = items  # keep the list object: others may hold it
            return live
        return items

    def node(self, live: Any, node: dict, kind: Any, path: str) -> Any:
        if kind == "rng":
            state = node["state"]
            try:
                set_generator_state(live, state)
                return live
            except (TypeError, ValueError):
                return new_generator(state)
        if kind == "dict":
            old = live if isinstance(live, dict) else {}
            new = {k: self.value(old.get(k, _MISSING), v, f"{path}[{k!r}]") for k, v in node["items"]}
            if isinstance(live, dict):
                live.clear()
                live.update(new)
                return live
            return new
        if kind == "deque":
            items = [self.value(_MISSING, v, f"{path}[{i}]") for i, v in enumerate(node["items"])]
            return collections.deque(items, maxlen=node["maxlen"])
        if kind == "dtype":
            return np.dtype(node["str"])
        if kind == "enum":
            if not (isinstance(live, enum.Enum) and _cls(live) == node["class"]):
                raise EnvStateError(f"{path}: expected an enum {node['class']}, the target env has {_cls(live)}")
            return type(live)[node["name"]]
        if kind in ("object", "state_dict"):
            return self.obj(live, node, kind, path)
        raise EnvStateError(f"{path}: unknown node kind {kind!r} in the env state tree")

    def obj(self, live: Any, node: dict, kind: str, path: str) -> Any:
        if live is _MISSING or _cls(live) != node["class"]:
            have = "nothing" if live is _MISSING else f"a {_cls(live)}"
            raise EnvStateError(f"{path}: the saved env has a {node['class']} here, the target env has {have}; "
                                "build the env exactly as the saved one (same id, num_envs, wrappers, kwargs)")
        if kind == "state_dict":
            live.load_state_dict(_copy_tree(node["state"]))
        for name, sub in node["attrs" if kind == "object" else "spaces"].items():
            vars(live)[name] = self.value(vars(live).get(name, _MISSING), sub, f"{path}.{name}")
        return live


def set_env_state(env: Any, tree: dict) -> None:
    """Restore :func:`get_env_state` into ``env``, an environment built exactly like the saved one.

    Raises :class:`EnvStateError` when the tree does not fit the environment (the message names the
    attribute). The tree itself is not modified, so it can be restored more than once.
    """
    if not isinstance(tree, dict) or tree.get("format") != FORMAT or tree.get("version") != FORMAT_VERSION:
        got = (tree.get("format"), tree.get("version")) if isinstance(tree, dict) else type(tree).__name__
        raise EnvStateError(f"not an env state tree of {FORMAT!r} version {FORMAT_VERSION} (got {got})")
    if isinstance(env, AsyncVectorEnv):
        raise EnvStateError("env: cannot restore the state of an AsyncVectorEnv (its envs live in subprocesses)")
    _Restore().value(env, tree["root"], "env")
