"""Atomic, pickle-free checkpoints of state trees: tensors in safetensors, the rest in JSON.

A *state tree* is nested ``dict`` / ``list`` / ``tuple`` whose leaves are ``torch.Tensor``,
``numpy.ndarray``, numpy scalars or JSON scalars (``int`` of any size, ``float`` incl. nan/inf,
``bool``, ``str``, ``None``). Dict keys are ``str`` or ``int`` (optimizer state dicts use ints).

Layout of one run::

    run_dir/checkpoints/
        step_000000001024/            one complete checkpoint (``-1``, ``-2`` ... on a re-save)
            tensors.safetensors       every tensor and array, keyed by its path in the tree
            meta.json                 {"manifest": {...}, "tree": tree with references}
        latest                        text file naming the newest complete checkpoint

A save writes into a staging directory, fsyncs the files and the directory, renames it into place,
then atomically replaces ``latest``, and only then deletes checkpoints beyond ``keep_last``. A crash
at any point leaves the previous checkpoint intact and ``latest`` naming a complete checkpoint.
Loading reads only JSON and safetensors (never pickle), checks the sha256 of the tensor file and
the structure, and raises :class:`CheckpointError` naming the file and the problem.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import re
import shutil
import struct
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

FORMAT = "policyopt-checkpoint"
FORMAT_VERSION = 1
TENSOR_FILE = "tensors.safetensors"
META_FILE = "meta.json"
LATEST_FILE = "latest"
CHECKPOINTS_DIR = "checkpoints"
_DIR_RE = re.compile(r"^step_(\d{12,})(?:-(\d+))?$")
_TEMP_PREFIXES = (".staging-", ".trash-", ".latest.tmp")
# dtypes that safetensors stores natively; anything else is stored as raw bytes plus its dtype.
_NATIVE = {
    torch.bool, torch.uint8, torch.int8, torch.int16, torch.uint16, torch.int32, torch.uint32,
    torch.int64, torch.uint64, torch.float16, torch.bfloat16, torch.float32, torch.float64,
    torch.complex64, torch.float8_e4m3fn, torch.float8_e5m2,
}


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read; the message names the file and the problem."""


# ----------------------------------------------------------------------------- encoding


def _path_str(path: tuple) -> str:
    return "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path) or "<root>"


class _TensorSink:
    """Collects tensors for the safetensors file under unique keys derived from tree paths."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self._storages: set[int] = set()

    def _put(self, path: tuple, t: torch.Tensor) -> str:
        key, n = _path_str(path), 1
        while key in self.tensors:  # e.g. int key 0 and str key "0" in one dict
            key, n = f"{_path_str(path)}#{n}", n + 1
        ptr = t.untyped_storage().data_ptr()
        if t.numel() and ptr in self._storages:  # safetensors refuses tensors sharing memory
            t = t.clone()
        self._storages.add(t.untyped_storage().data_ptr())
        self.tensors[key] = t
        return key

    def tensor(self, path: tuple, t: torch.Tensor) -> dict:
        if t.layout != torch.strided or t.is_quantized:
            raise CheckpointError(f"cannot save {_path_str(path)}: unsupported tensor layout {t.layout}")
        t = t.detach().cpu().resolve_conj().resolve_neg().contiguous()
        if t.dtype in _NATIVE:
            return {"$tensor": self._put(path, t)}
        raw = t.reshape(-1).view(torch.uint8)
        return {"$tensor": self._put(path, raw), "dtype": str(t.dtype).removeprefix("torch."),
                "shape": list(t.shape)}

    def array(self, path: tuple, a: np.ndarray, tag: str = "$ndarray") -> dict:
        dt = a.dtype
        if dt.hasobject or dt.fields is not None or dt.subdtype is not None:
            raise CheckpointError(f"cannot save {_path_str(path)}: numpy dtype {dt} is not supported")
        a = a if a.flags.c_contiguous and a.flags.writeable else a.copy(order="C")
        try:
            t = torch.from_numpy(a) if dt.isnative else None
        except TypeError:
            t = None
        if t is not None and t.dtype in _NATIVE:
            return {tag: self._put(path, t), "dtype": dt.str}
        raw = torch.from_numpy(a.reshape(-1).view(np.uint8))
        return {tag: self._put(path, raw), "dtype": dt.str, "shape": list(a.shape), "raw": True}


def _encode_float(x: float) -> Any:
    return x if math.isfinite(x) else {"$float": struct.pack(">d", x).hex()}


def _encode(x: Any, path: tuple, sink: _TensorSink) -> Any:
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, np.generic):
        return sink.array(path, np.asarray(x), tag="$npscalar")
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return _encode_float(float(x))
    if isinstance(x, torch.Tensor):
        return sink.tensor(path, x)
    if isinstance(x, np.ndarray):
        return sink.array(path, x)
    if isinstance(x, list):
        return [_encode(v, (*path, i), sink) for i, v in enumerate(x)]
    if isinstance(x, tuple):
        return {"$tuple": [_encode(v, (*path, i), sink) for i, v in enumerate(x)]}
    if isinstance(x, dict):
        for k in x:
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise CheckpointError(f"cannot save {_path_str(path)}: dict key {k!r} is not str or int")
        if all(isinstance(k, str) and not k.startswith("$") for k in x):
            return {k: _encode(v, (*path, k), sink) for k, v in x.items()}
        return {"$dict": [[k, _encode(v, (*path, k), sink)] for k, v in x.items()]}
    raise CheckpointError(
        f"cannot save {_path_str(path)}: unsupported type {type(x).__module__}.{type(x).__qualname__} "
        "(state trees hold dict/list/tuple, tensors, arrays and JSON scalars)"
    )


# ----------------------------------------------------------------------------- decoding


def _decode_array(node: dict, tag: str, t: torch.Tensor) -> Any:
    dtype = np.dtype(node["dtype"])
    if node.get("raw"):
        a = t.numpy().view(dtype).reshape(node["shape"])
    else:
        a = t.numpy()
        if a.dtype != dtype:
            raise ValueError(f"array dtype {a.dtype} does not match recorded {dtype}")
    return a[()] if tag == "$npscalar" else a


def _decode_leaf(node: dict, tensors: dict[str, torch.Tensor], used: set[str]) -> Any:
    tag = next(iter(node))
    if tag == "$float":
        return struct.unpack(">d", bytes.fromhex(node[tag]))[0]
    key = node[tag]
    if key not in tensors:
        raise ValueError(f"references tensor {key!r} which is not in {TENSOR_FILE}")
    used.add(key)
    t = tensors[key]
    if tag == "$tensor":
        if "dtype" in node:
            return t.view(getattr(torch, node["dtype"])).reshape(node["shape"])
        return t
    return _decode_array(node, tag, t)


def _decode(node: Any, tensors: dict[str, torch.Tensor], used: set[str]) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors, used) for v in node]
    if not isinstance(node, dict):
        return node
    tags = [k for k in node if k.startswith("$")]
    if not tags:
        return {k: _decode(v, tensors, used) for k, v in node.items()}
    tag = tags[0]
    if len(tags) != 1 or next(iter(node)) != tag:
        raise ValueError(f"malformed node with keys {list(node)}")
    if tag == "$tuple":
        return tuple(_decode(v, tensors, used) for v in node[tag])
    if tag == "$dict":
        return {k: _decode(v, tensors, used) for k, v in node[tag]}
    if tag in ("$float", "$tensor", "$ndarray", "$npscalar"):
        return _decode_leaf(node, tensors, used)
    raise ValueError(f"unknown node tag {tag!r}")


# ----------------------------------------------------------------------------- files


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _order(name: str) -> tuple[int, int] | None:
    m = _DIR_RE.match(name)
    return (int(m.group(1)), int(m.group(2) or 0)) if m else None


def _is_complete(path: Path) -> bool:
    return path.is_dir() and (path / META_FILE).is_file() and (path / TENSOR_FILE).is_file()


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint directories of ``run_dir``, oldest first (by step, then re-save number)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [(_order(p.name), p) for p in root.iterdir() if _order(p.name) and _is_complete(p)]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint ``latest`` names; the newest complete one if ``latest`` is missing or dangling.

    A directory that ``latest`` names is returned even if damaged, so that loading it reports why.
    """
    root = Path(run_dir) / CHECKPOINTS_DIR
    try:
        name = (root / LATEST_FILE).read_text().strip()
    except OSError:
        name = ""
    if name and _order(name) and (root / name).is_dir():
        return root / name
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def _clean_stale(root: Path) -> None:
    for p in root.iterdir():
        if p.name.startswith(_TEMP_PREFIXES):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def _write_latest(root: Path, name: str) -> None:
    tmp = root / f".latest.tmp-{os.getpid()}"
    _write_file(tmp, (name + "\n").encode())
    os.replace(tmp, root / LATEST_FILE)
    _fsync_dir(root)


def _prune(root: Path, keep_last: int | None, keep: Path) -> None:
    if keep_last is None:
        return
    found = list_checkpoints(root.parent)
    for old in found[: max(len(found) - keep_last, 0)]:
        if old != keep:
            trash = root / f".trash-{old.name}-{os.getpid()}"
            os.rename(old, trash)  # atomic: a half-deleted checkpoint is never visible
            shutil.rmtree(trash, ignore_errors=True)


def _free_name(root: Path, step: int) -> Path:
    base, n = f"step_{step:012d}", 0
    while (root / (base if n == 0 else f"{base}-{n}")).exists():
        n += 1
    return root / (base if n == 0 else f"{base}-{n}")


def _stage(staging: Path, step: int, tree: Any) -> None:
    sink = _TensorSink()
    encoded = _encode(tree, (), sink)
    data = safetensors.torch.save(sink.tensors, metadata={"format": FORMAT})
    now = time.time()
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION, "step": step,
        "created_unix": now,
        "created_utc": datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(),
        "tensor_file": TENSOR_FILE, "tensor_bytes": len(data),
        "tensor_sha256": hashlib.sha256(data).hexdigest(), "num_tensors": len(sink.tensors),
    }
    meta = json.dumps({"manifest": manifest, "tree": encoded}, allow_nan=False, indent=1)
    staging.mkdir()
    _write_file(staging / TENSOR_FILE, data)
    _write_file(staging / META_FILE, meta.encode())
    _fsync_dir(staging)


def save_checkpoint(run_dir: str | os.PathLike, step: int, tree: Any, keep_last: int | None = 3) -> Path:
    """Write ``tree`` as the checkpoint of ``step`` under ``run_dir/checkpoints``; return its directory.

    Atomic (staged, fsynced, renamed; then ``latest`` replaced; then old checkpoints pruned so that
    ``keep_last`` remain, ``None`` keeps all). Saving a step that already exists adds a ``-N`` copy.
    One writer per run directory is assumed.
    """
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"step must be a non-negative int, got {step!r}")
    if keep_last is not None and (not isinstance(keep_last, int) or keep_last < 1):
        raise CheckpointError(f"keep_last must be an int >= 1 or None, got {keep_last!r}")
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        root.mkdir(parents=True)
        _fsync_dir(root.parent)
    _clean_stale(root)
    staging = root / f".staging-step_{step:012d}-{os.getpid()}"
    try:
        _stage(staging, step, tree)
        final = _free_name(root, step)
        os.rename(staging, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _write_latest(root, final.name)
    try:
        _prune(root, keep_last, final)
    except OSError as e:  # the new checkpoint is already complete and named by `latest`
        warnings.warn(f"{root}: could not delete old checkpoints ({e}); will retry on the next save",
                      RuntimeWarning, stacklevel=2)
    return final


# ----------------------------------------------------------------------------- loading


def _read_meta(path: Path) -> tuple[dict, Any]:
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file is missing") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    manifest = meta.get("manifest") if isinstance(meta, dict) else None
    if not isinstance(manifest, dict) or "tree" not in meta:
        raise CheckpointError(f"{path}: missing 'manifest' or 'tree'")
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unknown format {manifest.get('format')!r} version {manifest.get('version')!r} "
            f"(this policyopt reads {FORMAT!r} version {FORMAT_VERSION})"
        )
    for key, typ in (("step", int), ("tensor_sha256", str), ("tensor_bytes", int)):
        if not isinstance(manifest.get(key), typ):
            raise CheckpointError(f"{path}: manifest field {key!r} is missing or not {typ.__name__}")
    return manifest, meta["tree"]


def _read_tensors(path: Path, manifest: dict) -> dict[str, torch.Tensor]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file is missing") from None
    if len(data) != manifest["tensor_bytes"]:
        raise CheckpointError(f"{path}: truncated or extended: {len(data)} bytes, "
                              f"manifest says {manifest['tensor_bytes']}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest["tensor_sha256"]:
        raise CheckpointError(f"{path}: sha256 mismatch (corrupt file): {digest} != "
                              f"{manifest['tensor_sha256']} recorded in {META_FILE}")
    try:
        return safetensors.torch.load(data)
    except Exception as e:  # noqa: BLE001 - any parse failure is a corrupt file
        raise CheckpointError(f"{path}: cannot parse safetensors ({e})") from None


def _resolve(path: Path) -> Path:
    if _order(path.name) or (path / META_FILE).exists() or (path / TENSOR_FILE).exists():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint or run directory")
    if path.name == CHECKPOINTS_DIR and not (path / CHECKPOINTS_DIR).is_dir():
        path = path.parent  # the user passed run_dir/checkpoints
    found = latest_checkpoint(path)
    if found is None:
        raise CheckpointError(f"{path}: run directory holds no complete checkpoint")
    return found


def load_checkpoint(path: str | os.PathLike) -> tuple[Any, int]:
    """Load ``(tree, step)`` from a checkpoint directory, or from a run directory (its ``latest``).

    Uses only JSON and safetensors; tensors come back on CPU, arrays as numpy with their dtype.
    """
    ckpt = _resolve(Path(path))
    manifest, encoded = _read_meta(ckpt / META_FILE)
    tensors = _read_tensors(ckpt / TENSOR_FILE, manifest)
    used: set[str] = set()
    try:
        tree = _decode(encoded, tensors, used)
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError) as e:
        raise CheckpointError(f"{ckpt / META_FILE}: malformed tree ({e})") from None
    if used != set(tensors):
        missing = sorted(set(tensors) - used)[:5]
        raise CheckpointError(f"{ckpt / TENSOR_FILE}: tensors not referenced by {META_FILE}: {missing}")
    return tree, manifest["step"]
