"""Checkpoints: bitwise round trip, atomicity under injected failures, corruption errors, no pickle."""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from policyopt.runtime import checkpoint as ck
from policyopt.runtime.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint

TORCH_DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.uint16, torch.int32, torch.uint32,
                torch.int64, torch.uint64, torch.float16, torch.bfloat16, torch.float32, torch.float64,
                torch.complex64, torch.complex128, torch.float8_e4m3fn]
NUMPY_DTYPES = ["?", "u1", "i1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8", "<c8",
                "<c16", ">f8", ">i4", "<U5", "<M8[ns]", "S3"]


def _rich_tree() -> dict:
    g = torch.Generator().manual_seed(3)
    tensors = {str(dt): (torch.randn(2, 3, generator=g) * 50).to(dt) for dt in TORCH_DTYPES}
    arrays = {dt: (np.arange(6).reshape(2, 3) * 7).astype(dt) for dt in NUMPY_DTYPES}
    base = torch.arange(10.0)
    return {
        "tensors": tensors,
        "arrays": arrays,
        "zero_d": [torch.tensor(1.5, dtype=torch.bfloat16), np.array(-2.25, dtype=np.float32), torch.tensor(7)],
        "empty": [torch.zeros(0, 4), np.zeros((3, 0), dtype=np.int16), torch.zeros(0, dtype=torch.bfloat16)],
        "views": [base, base[2:5], base.view(2, 5).t(), np.arange(12.0).reshape(3, 4)[:, 1]],
        "np_scalars": [np.float32(0.1), np.int64(-3), np.bool_(True), np.float64(np.nan), np.uint64(2**64 - 1)],
        "floats": [0.1, -0.0, 1e-310, 1e308, math.pi, math.nan, math.inf, -math.inf,
                   struct.unpack(">d", bytes.fromhex("7ff8000000000123"))[0]],
        "ints": [0, -1, 2**64 + 5, -(2**100), 10**40],
        "misc": [None, True, False, "", "slash/and~tilde", "ünïcode \u2603", [[], [[1]]], {}],
        "tuple": (1, (2.5, "x"), [np.arange(3)]),
        "int_keys": {0: {"step": torch.tensor(3.0)}, 1: {"exp_avg": torch.ones(2)}},
        "odd_keys": {"$tensor": 1, "0": np.zeros(1), 0: np.ones(1), "a/b": 2},
        "param": torch.nn.Parameter(torch.ones(2, 2)),
    }


def _assert_same(a, b, path="root"):
    assert type(a) is type(b), f"{path}: {type(a)} != {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert a.reshape(-1).view(torch.uint8).tolist() == b.reshape(-1).view(torch.uint8).tolist(), path
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b), path
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes(), path
    elif isinstance(a, float):
        assert struct.pack(">d", a) == struct.pack(">d", b), path
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    else:
        assert a == b, path


def test_rich_tree_round_trips_bitwise(tmp_path):
    tree = _rich_tree()
    tree["param"] = tree["param"].detach()  # a Parameter comes back as a plain tensor
    path = save_checkpoint(tmp_path, 5, tree)
    assert path == tmp_path / "checkpoints" / "step_000000000005"
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == path.name
    loaded, step = load_checkpoint(tmp_path)
    assert step == 5
    _assert_same(tree, loaded)
    loaded2, _ = load_checkpoint(path)
    _assert_same(tree, loaded2)
    assert load_checkpoint(tmp_path / "checkpoints")[1] == 5
    manifest = json.loads((path / "meta.json").read_text())["manifest"]
    assert manifest["version"] == ck.FORMAT_VERSION and manifest["step"] == 5
    assert len(manifest["tensor_sha256"]) == 64 and manifest["created_unix"] > 0


def test_loaded_arrays_are_writable_and_independent(tmp_path):
    save_checkpoint(tmp_path, 0, {"a": np.zeros(3), "b": np.zeros(3)})
    tree, _ = load_checkpoint(tmp_path)
    tree["a"][0] = 1.0
    assert tree["a"].tolist() == [1.0, 0.0, 0.0] and tree["b"].tolist() == [0.0, 0.0, 0.0]


def test_unsupported_leaf_names_its_path(tmp_path):
    with pytest.raises(CheckpointError, match=r"model/layers/1.*builtins.object"):
        save_checkpoint(tmp_path, 0, {"model": {"layers": [1, object()]}})
    with pytest.raises(CheckpointError, match="dtype object"):
        save_checkpoint(tmp_path, 0, {"x": np.array([None, 1])})
    assert list_checkpoints(tmp_path) == []


def test_keep_last_and_resave_same_step(tmp_path):
    for step in (10, 20, 30, 40, 50):
        save_checkpoint(tmp_path, step, {"step": step}, keep_last=3)
    assert [p.name for p in list_checkpoints(tmp_path)] == [f"step_{s:012d}" for s in (30, 40, 50)]
    again = save_checkpoint(tmp_path, 50, {"step": "again"}, keep_last=3)
    assert again.name == "step_000000000050-1"
    assert load_checkpoint(tmp_path)[0] == {"step": "again"}
    assert [p.name for p in list_checkpoints(tmp_path)][-2:] == ["step_000000000050", "step_000000000050-1"]
    save_checkpoint(tmp_path, 60, {"step": 60}, keep_last=None)
    assert len(list_checkpoints(tmp_path)) == 4


def test_latest_missing_or_dangling_falls_back_to_newest(tmp_path):
    save_checkpoint(tmp_path, 1, {"v": 1})
    save_checkpoint(tmp_path, 2, {"v": 2})
    latest = tmp_path / "checkpoints" / "latest"
    latest.write_text("step_000000000099\n")
    assert load_checkpoint(tmp_path) == ({"v": 2}, 2)
    latest.unlink()
    assert load_checkpoint(tmp_path) == ({"v": 2}, 2)


@pytest.mark.parametrize("where", ["tensor_write", "meta_write", "rename", "latest_replace", "prune"])
def test_failure_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch, where):
    save_checkpoint(tmp_path, 1, {"w": torch.ones(3), "v": 1})
    save_checkpoint(tmp_path, 2, {"w": torch.full((3,), 2.0), "v": 2})
    real_write, real_rename = ck._write_file, os.rename

    def boom(*args):
        raise OSError(f"injected failure at {where}")

    if where in ("tensor_write", "meta_write"):
        name = ck.TENSOR_FILE if where == "tensor_write" else ck.META_FILE

        def write(path, data):
            if path.name == name:
                real_write(path, data[: len(data) // 2])  # a torn write, then the crash
                boom()
            real_write(path, data)
        monkeypatch.setattr(ck, "_write_file", write)
    elif where == "rename":
        monkeypatch.setattr(ck.os, "rename", lambda a, b: boom() if ".staging" in str(a) else real_rename(a, b))
    elif where == "latest_replace":
        monkeypatch.setattr(ck.os, "replace", boom)
    else:
        monkeypatch.setattr(ck.shutil, "rmtree", boom)
        monkeypatch.setattr(ck.os, "rename", lambda a, b: boom() if ".trash" in str(b) else real_rename(a, b))
    if where == "prune":  # the checkpoint is complete: a failed cleanup only warns
        with pytest.warns(RuntimeWarning, match="could not delete old checkpoints"):
            save_checkpoint(tmp_path, 3, {"w": torch.full((3,), 3.0), "v": 3}, keep_last=1)
    else:
        with pytest.raises(OSError, match="injected"):
            save_checkpoint(tmp_path, 3, {"w": torch.full((3,), 3.0), "v": 3}, keep_last=1)
    monkeypatch.undo()
    tree, step = load_checkpoint(tmp_path)
    expected = 3 if where == "prune" else 2  # the new checkpoint is complete once `latest` names it
    assert step == expected and tree["v"] == expected and tree["w"].tolist() == [float(expected)] * 3
    for p in list_checkpoints(tmp_path):
        assert load_checkpoint(p)[1] in (1, 2, 3)
    save_checkpoint(tmp_path, 4, {"v": 4}, keep_last=2)  # the next save cleans stale staging dirs
    leftovers = [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert load_checkpoint(tmp_path)[1] == 4


def test_hard_crash_leftovers_are_ignored_then_cleaned(tmp_path):
    save_checkpoint(tmp_path, 1, {"v": 1})
    root = tmp_path / "checkpoints"
    (root / ".staging-step_000000000002-999").mkdir()  # a process killed mid-save
    (root / ".staging-step_000000000002-999" / ck.TENSOR_FILE).write_bytes(b"partial")
    (root / ".trash-step_000000000000-999").mkdir()
    (root / ".latest.tmp-999").write_text("step_000000000002")
    assert load_checkpoint(tmp_path) == ({"v": 1}, 1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000000000001"]
    save_checkpoint(tmp_path, 2, {"v": 2})
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_000000000001", "step_000000000002"]


def _corrupt(path, kind):
    tensors, meta = path / ck.TENSOR_FILE, path / ck.META_FILE
    if kind == "truncated":
        tensors.write_bytes(tensors.read_bytes()[:-7])
    elif kind == "flipped":
        data = bytearray(tensors.read_bytes())
        data[len(data) - 3] ^= 0x01
        tensors.write_bytes(bytes(data))
    elif kind == "garbage_json":
        meta.write_text('{"manifest": {"format": ')
    elif kind == "missing_tensors":
        tensors.unlink()
    elif kind == "missing_meta":
        meta.unlink()
    elif kind == "version":
        m = json.loads(meta.read_text())
        m["manifest"]["version"] = 99
        meta.write_text(json.dumps(m))
    elif kind == "bad_reference":
        m = json.loads(meta.read_text())
        m["tree"]["w"]["$tensor"] = "nope"
        meta.write_text(json.dumps(m))
    elif kind == "garbage_tensors":  # consistent hash, unparsable content
        m = json.loads(meta.read_text())
        tensors.write_bytes(b"\xff" * 64)
        m["manifest"].update(tensor_bytes=64, tensor_sha256=hashlib.sha256(b"\xff" * 64).hexdigest())
        meta.write_text(json.dumps(m))


@pytest.mark.parametrize("kind,message", [
    ("truncated", r"tensors\.safetensors: truncated"),
    ("flipped", r"tensors\.safetensors: sha256 mismatch"),
    ("garbage_json", r"meta\.json: not valid JSON"),
    ("missing_tensors", r"tensors\.safetensors: file is missing"),
    ("missing_meta", r"meta\.json: file is missing"),
    ("version", r"meta\.json: unknown format .* version 99"),
    ("bad_reference", r"meta\.json: malformed tree .*'nope'"),
    ("garbage_tensors", r"tensors\.safetensors: cannot parse safetensors"),
])
def test_corrupt_checkpoint_raises_naming_the_problem(tmp_path, kind, message):
    path = save_checkpoint(tmp_path, 7, {"w": torch.arange(100.0), "n": np.arange(4)})
    _corrupt(path, kind)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path)  # through `latest`: the corrupt checkpoint is not silently skipped


def test_missing_run_dir_and_empty_run_dir(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        load_checkpoint(tmp_path)


def test_load_never_unpickles(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path, 1, {"model": model.state_dict(), "opt": opt.state_dict()})

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle / torch.load used during load_checkpoint")

    for target, name in ((pickle, "load"), (pickle, "loads"), (torch, "load"), (np, "load")):
        monkeypatch.setattr(target, name, forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    tree, step = load_checkpoint(tmp_path)
    monkeypatch.undo()
    model2 = torch.nn.Linear(3, 2)
    model2.load_state_dict(tree["model"])
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-3)
    opt2.load_state_dict(tree["opt"])
    assert torch.equal(model2.weight, model.weight)
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_bad_arguments(tmp_path):
    with pytest.raises(CheckpointError, match="step"):
        save_checkpoint(tmp_path, -1, {})
    with pytest.raises(CheckpointError, match="keep_last"):
        save_checkpoint(tmp_path, 1, {}, keep_last=0)
    with pytest.raises(CheckpointError, match="dict key"):
        save_checkpoint(tmp_path, 1, {(1, 2): 3})
