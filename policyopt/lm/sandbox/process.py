"""Parent-side process control: spawn, watch, cap, kill the whole tree, reap.

The parent enforces every time and output budget. It polls the sandbox's process tree (all
processes owned by the run's dedicated uid when the host is root, else the descendants of the
launcher), kills with ``SIGKILL`` — the PID-namespace init first, which takes every process of the
namespace with it, then the launcher's process group, then anything still owned by the run's uid —
and reaps. When the run's uid is dedicated, the parent verifies afterwards that no process of that
uid survived (``RawRun.leftover``).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import select
import selectors
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from policyopt.lm.sandbox.limits import Limits

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_POLL_S = 0.02
_CPU_POLL_S = 0.05
_EXIT_GRACE_S = 0.2
_PR_SET_CHILD_SUBREAPER = 36
_subreaper_lock = threading.Lock()
_subreaper_on = False


@dataclass
class Launch:
    """Everything needed to start one sandboxed process (built by a backend)."""

    argv: list[str]
    env: dict[str, str]
    uid: int | None
    """Host uid the run executes as (a dedicated, otherwise unused uid when the parent is root; the
    switch is done by ``setpriv`` in ``argv``, so ``Popen`` keeps its fast ``vfork`` path), or None."""
    stdin_fd: int
    pass_fds: tuple[int, ...] = ()
    close_after_spawn: tuple[int, ...] = ()
    """Parent copies of fds handed to the child (write ends, memfds): closed once it has started."""
    info_fd: int | None = None
    """Read end of bwrap's ``--info-fd`` pipe (gives the host pid of the namespace's init)."""
    cwd: str | None = None


@dataclass
class RawRun:
    """What the parent observed; turned into verdicts by :mod:`policyopt.lm.sandbox.harness`."""

    returncode: int | None = None
    signal: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    messages: list[dict] = field(default_factory=list)
    killed: str | None = None
    """Why the parent killed it: ``wall``, ``cpu``, ``stdout``, ``stderr``, ``channel`` or None."""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    """User+system CPU of the reaped tree (kernel accounting via ``wait4``; the child cannot forge it)."""
    leftover: int = 0
    """Processes of the run's dedicated uid still alive after cleanup (must be 0)."""
    spawn_error: str | None = None


def _proc_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return data[data.rfind(")") + 2:].split()


def pids_of_uid(uid: int) -> list[int]:
    """Pids whose ``/proc`` entry is owned by ``uid`` (zombies included)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{name}").st_uid == uid:
                    found.append(int(name))
    return found


def _descendants(root: int) -> list[int]:
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                stack.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def _tree_cpu_s(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        fields = _proc_stat(pid)
        if fields is not None and len(fields) > 12:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _CLK_TCK


def enable_subreaper() -> None:
    """Make this process the reaper of its orphaned descendants, so the ``setsid`` orphans of the weak
    backend never linger as zombies (counting against their uid's RLIMIT_NPROC) on hosts whose init
    does not reap, such as containers without an init. Only sandbox-uid orphans are reaped by us;
    orphans of other children of this process would stay zombies. bwrap runs do not need it: the
    namespace init is always reaped by bwrap itself."""
    global _subreaper_on
    with _subreaper_lock:
        if not _subreaper_on:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
            _subreaper_on = True


def _reap_orphans(uid: int, keep: int | None) -> None:
    for pid in pids_of_uid(uid):
        fields = _proc_stat(pid)
        if pid != keep and fields and fields[0] == "Z" and int(fields[1]) == os.getpid():
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)


def kill_uid(uid: int, timeout_s: float = 2.0, keep: int | None = None) -> int:
    """SIGKILL every process of ``uid`` until none is left (or ``timeout_s``); returns survivors.
    Orphaned zombies of ``uid`` that this process adopted are reaped, except ``keep`` (the launcher,
    which the caller reaps itself with ``wait4``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        _reap_orphans(uid, keep)
        pids = [p for p in pids_of_uid(uid) if p != keep]
        alive = [p for p in pids if (_proc_stat(p) or ["Z"])[0] != "Z"]
        zombies = [p for p in pids if p not in alive]
        if not alive and not zombies:
            return 0
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            return len(alive) + len(zombies)
        time.sleep(0.01)


class UidSlots:
    """Dedicated host uids, one per concurrent run, locked across processes with ``flock``.

    A dedicated uid makes RLIMIT_NPROC count only the run's own processes, lets the parent find and
    kill everything the run spawned (even ``setsid`` orphans), and keeps the host's files of every
    other user out of reach. Only available when the parent runs as root.
    """

    def __init__(self, base: int, count: int) -> None:
        self.base, self.count = base, count
        self.lock_dir = os.path.join(tempfile.gettempdir(), "policyopt-sandbox-uids")
        os.makedirs(self.lock_dir, mode=0o700, exist_ok=True)

    @contextlib.contextmanager
    def acquire(self, timeout_s: float = 60.0) -> Iterator[int]:
        deadline = time.monotonic() + timeout_s
        while True:
            for uid in range(self.base, self.base + self.count):
                fd = os.open(os.path.join(self.lock_dir, f"{uid}.lock"), os.O_CREAT | os.O_RDWR, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                try:
                    kill_uid(uid)  # a crashed earlier owner may have left something behind
                    yield uid
                finally:
                    os.close(fd)
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no free sandbox uid in [{self.base}, {self.base + self.count})")
            time.sleep(0.01)


class _Watch:
    """Reads stdout / stderr / the result channel under caps and tracks the timed phase."""

    def __init__(self, proc: subprocess.Popen, channel_fd: int, limits: Limits) -> None:
        self.limits, self.proc = limits, proc
        self.buffers = {"stdout": bytearray(), "stderr": bytearray(), "channel": bytearray()}
        self.caps = {"stdout": limits.output_bytes, "stderr": limits.output_bytes,
                     "channel": limits.channel_bytes}
        self.selector = selectors.DefaultSelector()
        for name, fd in (("stdout", proc.stdout.fileno()), ("stderr", proc.stderr.fileno()),
                         ("channel", channel_fd)):
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ, name)
        self.exit_fd = os.pidfd_open(proc.pid)  # readable once the launcher exits: no sleeping poll
        self.selector.register(self.exit_fd, selectors.EVENT_READ, "exit")
        self.exited = False
        self.messages: list[dict] = []
        self._partial = b""
        self.phase_t0 = time.monotonic()
        self.phase_cpu0 = 0.0

    def open_streams(self) -> int:
        return len(self.selector.get_map()) - (0 if self.exited else 1)

    def pump(self, timeout: float, cpu_now: float) -> str | None:
        """Read what is ready; returns the name of an exceeded cap, else None."""
        for key, _ in self.selector.select(timeout):
            name = key.data
            if name == "exit":
                self.exited = True
                self.selector.unregister(key.fd)
                continue
            try:
                chunk = os.read(key.fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                self.selector.unregister(key.fd)
                continue
            self.buffers[name] += chunk
            if len(self.buffers[name]) > self.caps[name]:
                return name
            if name == "channel":
                self._parse(chunk, cpu_now)
        return None

    def _parse(self, chunk: bytes, cpu_now: float) -> None:
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            try:
                message = json.loads(line)
            except (ValueError, RecursionError):  # forged lines must not crash the parent
                message = {"invalid": True}
            if not isinstance(message, dict):
                message = {"invalid": True}
            if "begin" in message:
                self.phase_t0, self.phase_cpu0 = time.monotonic(), cpu_now
            self.messages.append(message)

    def close(self) -> None:
        self.selector.close()
        os.close(self.exit_fd)


def _open_child_pidfd(info_fd: int | None, launcher_pid: int, timeout_s: float = 10.0) -> int | None:
    """pidfd of bwrap's namespace init, read from ``--info-fd`` (checked to be the launcher's child)."""
    if info_fd is None:
        return None
    data, deadline = b"", time.monotonic() + timeout_s
    with contextlib.suppress(OSError):
        while (left := deadline - time.monotonic()) > 0 and select.select([info_fd], [], [], left)[0]:
            chunk = os.read(info_fd, 4096)
            if not chunk:
                break
            data += chunk
    os.close(info_fd)
    try:
        child = int(json.loads(data)["child-pid"])
        pidfd = os.pidfd_open(child)
    except (ValueError, KeyError, TypeError, OSError):
        return None
    fields = _proc_stat(child)
    if fields is None or int(fields[1]) != launcher_pid:
        os.close(pidfd)
        return None
    return pidfd


def _exited(pid: int) -> bool:
    """True once ``pid`` (our child) has exited; it is NOT reaped, so its pid and group stay valid."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_tree(proc: subprocess.Popen, pidfd: int | None, uid: int | None) -> None:
    if pidfd is not None:
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        deadline = time.monotonic() + 2.0  # let bwrap reap its init and exit by itself
        while not _exited(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.002)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if uid is not None:
        kill_uid(uid, timeout_s=0.5, keep=proc.pid)


def execute(launch: Launch, channel_fd: int, limits: Limits, total_timeout_s: float) -> RawRun:
    """Run ``launch`` to completion under ``limits`` and return what was observed.

    Budgets: ``limits.wall_timeout_s`` and ``limits.cpu_time_s`` per phase (a phase starts at launch
    and again at every ``begin`` message of the harness), and ``total_timeout_s`` for the whole run.
    """
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(
            launch.argv, stdin=launch.stdin_fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=launch.pass_fds, env=launch.env, cwd=launch.cwd, start_new_session=True)
    except OSError as exc:
        return RawRun(spawn_error=f"{type(exc).__name__}: {exc}")
    finally:
        for fd in launch.close_after_spawn:
            os.close(fd)
    pidfd = _open_child_pidfd(launch.info_fd, proc.pid)
    watch: _Watch | None = None
    try:
        watch = _Watch(proc, channel_fd, limits)
        killed = _watch_loop(proc, watch, launch.uid, limits, t0 + total_timeout_s)
    finally:  # whatever happened above, the tree is killed and reaped before we return or raise
        _kill_tree(proc, pidfd, launch.uid)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if watch is not None:
            _drain(watch)
            watch.close()
        proc.stdout.close()
        proc.stderr.close()
        if pidfd is not None:
            os.close(pidfd)
    leftover = kill_uid(launch.uid, timeout_s=1.0) if launch.uid is not None else 0
    code = proc.returncode
    return RawRun(
        returncode=code if code >= 0 else None, signal=-code if code < 0 else None,
        stdout=bytes(watch.buffers["stdout"][: limits.output_bytes]),
        stderr=bytes(watch.buffers["stderr"][: limits.output_bytes]),
        messages=watch.messages, killed=killed, wall_s=time.monotonic() - t0,
        cpu_s=usage.ru_utime + usage.ru_stime, leftover=leftover)


def _watch_loop(proc: subprocess.Popen, watch: _Watch, uid: int | None, limits: Limits,
                hard_deadline: float) -> str | None:
    cpu_now, next_cpu, exited_at = 0.0, 0.0, None
    while True:
        now = time.monotonic()
        if now >= next_cpu:
            pids = pids_of_uid(uid) if uid is not None else _descendants(proc.pid)
            cpu_now, next_cpu = _tree_cpu_s(pids), now + _CPU_POLL_S
        cap = watch.pump(_POLL_S, cpu_now)
        if cap is not None:
            return cap
        now = time.monotonic()
        if now > min(watch.phase_t0 + limits.wall_timeout_s, hard_deadline):
            return "wall"
        if cpu_now - watch.phase_cpu0 > limits.cpu_time_s:
            return "cpu"
        if watch.exited:
            exited_at = exited_at or now
            if watch.open_streams() == 0 or now - exited_at > _EXIT_GRACE_S:
                return None


def _drain(watch: _Watch) -> None:
    with contextlib.suppress(OSError, ValueError):
        while watch.open_streams() and watch.selector.select(0):
            if watch.pump(0, 0.0) is not None:
                break
