"""Typed, frozen configuration: YAML in, YAML out, errors that name the key.

Every config in policyopt is a frozen ``@dataclass`` whose fields carry a docstring (the string
literal right under the field) and, where a range matters, a constraint written with
``typing.Annotated`` and ``pydantic.Field`` (for example ``Annotated[float, Field(gt=0)]``).
Validation is done by pydantic in strict-ish mode with unknown keys forbidden, so a typo, a wrong
type or an out-of-range value fails *before* training, with the dotted path of the key::

    ConfigError: ppo.learning_rate: Input should be greater than 0 (got -0.1)

Overrides use ``dotted.key=value`` strings whose values are parsed as YAML scalars.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

T = TypeVar("T")

_STRICT = pydantic.ConfigDict(extra="forbid", use_attribute_docstrings=True)


def configclass(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen dataclass whose validation forbids unknown keys.

    Use it for every config: ``@configclass class PPOConfig: learning_rate: float = 3e-4``.
    """
    cls.__pydantic_config__ = _STRICT  # type: ignore[attr-defined]
    return dataclasses.dataclass(frozen=True)(cls)


class ConfigError(ValueError):
    """A configuration could not be read or validated; the message names the key."""


def _format_pydantic(err: pydantic.ValidationError, prefix: str) -> str:
    lines = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"])
        key = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        if item["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            lines.append(f"{key}: unknown key")
        elif key.endswith("max_grad_norm") and item.get("input") == 0:
            lines.append(f"{key}: must be > 0, or null for no clipping (got 0)")
        else:
            lines.append(f"{key}: {item['msg']} (got {item.get('input')!r})")
    return "; ".join(lines)


def build(cls: type[T], data: Mapping[str, Any] | None, prefix: str = "") -> T:
    """Validate ``data`` against the dataclass ``cls`` and return a frozen instance.

    Unknown keys, wrong types and out-of-range values raise :class:`ConfigError` naming the key.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or cls.__name__}: expected a mapping, got {type(data).__name__}")
    if "__pydantic_config__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} must be declared with @configclass")
    try:
        adapter = pydantic.TypeAdapter(cls)
        return adapter.validate_python(dict(data))
    except pydantic.ValidationError as err:
        raise ConfigError(_format_pydantic(err, prefix)) from None


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML-safe dict of a config dataclass (tuples become lists)."""
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        return value
    return plain(config)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a clear error for a missing file or a syntax error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def dump_yaml(data: Mapping[str, Any], path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(dict(data), sort_keys=False))


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with ``a.b.c=value`` overrides applied (values parsed as YAML)."""
    out = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. ppo.learning_rate=3e-4)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {key}: value {raw!r} is not valid YAML: {err}") from None
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {key}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (used by ``policyopt list``/help)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs
