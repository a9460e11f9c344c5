"""Fixtures for the sandbox suite: a bwrap sandbox with short limits and a "host untouched" guard.

The guard plants a secret in the parent's environment, a canary file on the host, and a TCP server
on 127.0.0.1; after each case it asserts the canary is intact, the server saw no connection, no
process of a sandbox uid (or new child of ours) is left, and no file owned by a sandbox uid exists
in the host's writable places.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from policyopt.lm.sandbox import Limits, Sandbox, SandboxConfig
from policyopt.lm.sandbox.process import pids_of_uid

SAFE = Limits(wall_timeout_s=8.0, cpu_time_s=4.0, memory_mb=256, max_processes=16, max_file_mb=4,
              scratch_mb=16, output_bytes=1 << 16)
"""Default of the test sandbox: generous time, so that a loaded CI machine never turns a fast verdict
(MEMORY, OUTPUT_LIMIT, FAIL...) into TIMEOUT."""
FAST = dataclasses.replace(SAFE, wall_timeout_s=1.5, cpu_time_s=1.0)
"""For the cases that are meant to hang: they end in TIMEOUT after 1-1.5 s."""
UID_BASE, UID_SLOTS = 61000, 64


def _children(pid: int) -> set[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return {int(c) for c in f.read().split()}
    except OSError:
        return set()


def _sandbox_uid_processes() -> list[int]:
    if os.geteuid() != 0:
        return []
    return [p for uid in range(UID_BASE, UID_BASE + UID_SLOTS) for p in pids_of_uid(uid)]


def _sandbox_owned_files(roots: list[Path]) -> list[str]:
    found = []
    uids = range(UID_BASE, UID_BASE + UID_SLOTS)
    for root in roots:
        if not root.is_dir():
            continue
        for entry in os.scandir(root):
            try:
                if entry.stat(follow_symlinks=False).st_uid in uids:
                    found.append(entry.path)
            except OSError:
                continue
    return found


class TcpServer:
    """Counts connections to a listening socket on 127.0.0.1 (the sandbox must never reach it)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@dataclass
class Host:
    """What the guard planted on the host."""

    secret: str
    canary: Path
    outside_dir: Path
    server: TcpServer
    home: str = field(default_factory=lambda: os.path.expanduser("~"))


@pytest.fixture(scope="session")
def box() -> Sandbox:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (make test installs it with apt-get)")
    return Sandbox(SandboxConfig(limits=SAFE, uid_base=UID_BASE, uid_slots=UID_SLOTS))


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    secret = "sk-test-" + uuid.uuid4().hex
    monkeypatch.setenv("POLICYOPT_TEST_SECRET", secret)
    canary = tmp_path / "canary.txt"
    canary.write_text("keep me")
    server = TcpServer()
    children_before = _children(os.getpid())
    roots = [Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), tmp_path, Path(os.path.expanduser("~")),
             Path.cwd()]
    files_before = set(_sandbox_owned_files(roots))
    planted = Host(secret=secret, canary=canary, outside_dir=tmp_path, server=server)
    try:
        yield planted
    finally:
        server.close()
    assert canary.read_text() == "keep me", "the host canary file was modified or deleted"
    assert server.connections == 0, "the sandbox reached a TCP server on the host's 127.0.0.1"
    assert _sandbox_uid_processes() == [], "processes of a sandbox uid survived the run"
    assert _children(os.getpid()) <= children_before, "new child processes of the test survived"
    assert set(_sandbox_owned_files(roots)) <= files_before, "the sandbox created files on the host"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["canary.txt"], "files appeared outside the sandbox"
