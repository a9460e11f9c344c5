"""Sandbox backends: how one run is isolated. ``bwrap`` (default) or ``subprocess`` (weak, opt-in).

``BwrapBackend`` (bubblewrap, Debian package ``bubblewrap``) gives each run:

- new user, PID, network, IPC, UTS and cgroup namespaces (``--unshare-all --unshare-user``), no
  capabilities (``--cap-drop ALL``), no nested user namespaces (``--disable-userns``), a new session,
  and ``--die-with-parent``; the candidate is PID 1 of its namespace (``--as-pid-1``), so when it
  exits or is killed every process it started dies with it, ``setsid`` or not;
- no network at all: the new network namespace has only a loopback of its own;
- a filesystem made of: ``/usr`` (and the ``/bin``, ``/lib*`` links) read-only, the interpreter's
  prefix read-only when it lives outside ``/usr``, a fresh ``/proc`` and minimal ``/dev``, the
  harness and candidate files as read-only copies under ``/harness``, and ``/box``: a private
  size-capped tmpfs, the only writable place (also ``$HOME`` and ``$TMPDIR``). ``/`` is read-only.
  The host's ``/work``, ``/root``, ``/home``, ``/tmp`` and ``/etc`` do not exist inside;
- a scrubbed environment (``--clearenv`` plus a fixed handful of variables);
- rlimits set by ``prlimit`` before ``exec`` (see :mod:`policyopt.lm.sandbox.limits`).

``SubprocessBackend`` runs the interpreter directly under the same rlimits, scrubbed environment,
``/dev/null`` stdin, a private scratch directory as working directory and, when the parent is root,
a dedicated unprivileged uid. It has NO filesystem or network isolation and no total disk cap:
use it only for trusted code (your reference solutions) or where bwrap cannot run, explicitly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from policyopt.lm.sandbox.limits import Limits, rlimit_args
from policyopt.lm.sandbox.process import Launch, pids_of_uid
from policyopt.lm.sandbox.seccomp import deny_list_program

_INSIDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_inside.py")
_ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
BOX = "/box"
HARNESS_DIR = "/harness"


class SandboxUnavailable(RuntimeError):
    """The requested backend cannot run here; the sandbox refuses rather than fall back."""


def resolve_interpreter(spec: str) -> str:
    """The Python executable run inside the sandbox: ``auto`` prefers the system ``/usr/bin/python3``
    (already under the read-only ``/usr``), else this interpreter's base executable."""
    if spec != "auto":
        path = shutil.which(spec) or spec
    elif os.access("/usr/bin/python3", os.X_OK):
        path = "/usr/bin/python3"
    else:
        path = getattr(sys, "_base_executable", sys.executable)
    real = os.path.realpath(path)
    if not os.access(real, os.X_OK):
        raise SandboxUnavailable(f"interpreter {spec!r} resolved to {real!r}, which is not executable")
    return real


def sandbox_env(home: str) -> dict[str, str]:
    """The whole environment of the untrusted process: nothing of the parent's survives."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass
class Prepared:
    """A ready launch plus the cleanup that removes every host-side trace of it."""

    launch: Launch
    cleanup: Callable[[], None]


def as_user(uid: int | None) -> list[str]:
    """Command prefix that drops to ``uid`` (no groups, no new privileges) before anything else runs.

    ``setpriv`` instead of ``Popen(user=...)``: CPython must ``fork`` (copying the page tables of a
    trainer holding GBs of tensors: ~30 ms with 200 MB resident) to switch users itself, but can
    ``vfork`` when the switch happens in the exec'd program (~6 ms).
    """
    if uid is None:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise SandboxUnavailable("setpriv not found on PATH (util-linux)")
    return [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs", "--"]


def _nproc_extra(uid: int | None) -> int:
    """Processes the run's account already owns (0 for a dedicated uid): added to RLIMIT_NPROC."""
    return 0 if uid is not None else len(pids_of_uid(os.getuid()))


def _data_fd(name: str, data: bytes) -> int:
    """A close-on-exec memfd holding ``data``, positioned at 0 (handed to children with pass_fds)."""
    fd = os.memfd_create(name)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _stdin_fd(stdin: bytes | None) -> int:
    return os.open(os.devnull, os.O_RDONLY) if stdin is None else _data_fd("stdin", stdin)


class BwrapBackend:
    """Bubblewrap isolation (the default, and the only backend allowed for untrusted code)."""

    name = "bwrap"
    isolated = True
    _probe_cache: dict[str, str | None] = {}

    def __init__(self, interpreter: str, seccomp: bool = True) -> None:
        self.interpreter = interpreter
        self.bwrap = shutil.which("bwrap")
        self.prlimit = shutil.which("prlimit")
        self.seccomp = deny_list_program() if seccomp else b""

    def unavailable_reason(self, uid: int | None) -> str | None:
        """None if a trivial sandboxed interpreter starts here, else why not (cached per interpreter)."""
        if self.bwrap is None:
            return "bwrap not found on PATH (install the Debian/Ubuntu package 'bubblewrap')"
        if self.prlimit is None:
            return "prlimit not found on PATH (util-linux)"
        if self.seccomp is None:
            return "no seccomp filter for this architecture; set seccomp=false to run without one"
        key = f"{self.interpreter}:{uid}:{bool(self.seccomp)}"
        if key not in self._probe_cache:
            filter_fd = _data_fd("seccomp", self.seccomp)
            try:
                argv = [*as_user(uid), self.prlimit, "--core=0", "--", self.bwrap, *self._mount_args(),
                        *self._seccomp_args(filter_fd), "--", self.interpreter, "-I", "-S", "-c", "pass"]
                done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                                      env=sandbox_env(BOX), pass_fds=(filter_fd,))
                ok = done.returncode == 0
                reason = None if ok else f"bwrap probe failed: {done.stderr.decode(errors='replace')[:300]}"
            except (OSError, subprocess.SubprocessError, SandboxUnavailable) as exc:
                reason = f"bwrap probe failed: {exc}"
            finally:
                os.close(filter_fd)
            self._probe_cache[key] = reason
        return self._probe_cache[key]

    def _seccomp_args(self, filter_fd: int) -> list[str]:
        return ["--seccomp", str(filter_fd)] if self.seccomp else []

    def _mount_args(self, scratch_bytes: int = 1 << 20) -> list[str]:
        args = ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                "--as-pid-1", "--cap-drop", "ALL", "--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
        for path in _ROOT_LINKS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        prefix = os.path.dirname(os.path.dirname(self.interpreter))
        if not self.interpreter.startswith("/usr/"):
            args += ["--ro-bind", prefix, prefix]
        args += ["--proc", "/proc", "--dev", "/dev", "--size", str(scratch_bytes), "--perms", "0700",
                 "--tmpfs", BOX, "--chdir", BOX, "--clearenv"]
        for key, value in sandbox_env(BOX).items():
            args += ["--setenv", key, value]
        return args

    def prepare(self, files: dict[str, bytes], stdin: bytes | None, limits: Limits, uid: int | None,
                channel_w: int, n_phases: int) -> Prepared:
        fds: list[int] = []
        file_args: list[str] = ["--dir", HARNESS_DIR]
        for name, content in {"inside.py": _read_inside(), **files}.items():
            fds.append(_data_fd(name, content))
            file_args += ["--perms", "0444", "--ro-bind-data", str(fds[-1]), f"{HARNESS_DIR}/{name}"]
        if self.seccomp:
            fds.append(_data_fd("seccomp", self.seccomp))
            file_args += self._seccomp_args(fds[-1])
        info_r, info_w = os.pipe()
        stdin_fd = _stdin_fd(stdin)
        argv = [*as_user(uid), self.prlimit, *rlimit_args(limits, n_phases, _nproc_extra(uid)), "--", self.bwrap,
                *self._mount_args(limits.scratch_mb << 20), *file_args, "--remount-ro", "/dev",
                "--remount-ro", "/", "--info-fd", str(info_w), "--",
                self.interpreter, "-I", "-S", "-B", f"{HARNESS_DIR}/inside.py", str(channel_w),
                f"{HARNESS_DIR}/job.marshal"]
        launch = Launch(argv=argv, env=sandbox_env(BOX), uid=uid, stdin_fd=stdin_fd,
                        pass_fds=(channel_w, info_w, *fds), close_after_spawn=(channel_w, info_w, *fds),
                        info_fd=info_r, cwd="/")

        def cleanup() -> None:
            with contextlib.suppress(OSError):
                os.close(stdin_fd)
        return Prepared(launch, cleanup)


class SubprocessBackend:
    """Plain ``subprocess`` + rlimits: weak isolation, only as an explicit opt-in for trusted code."""

    name = "subprocess"
    isolated = False

    def __init__(self, interpreter: str) -> None:
        self.interpreter = interpreter
        self.prlimit = shutil.which("prlimit")

    def unavailable_reason(self, uid: int | None) -> str | None:
        if self.prlimit is None:
            return "prlimit not found on PATH (util-linux)"
        try:
            as_user(uid)
        except SandboxUnavailable as exc:
            return str(exc)
        return None

    def prepare(self, files: dict[str, bytes], stdin: bytes | None, limits: Limits, uid: int | None,
                channel_w: int, n_phases: int) -> Prepared:
        harness_dir = tempfile.mkdtemp(prefix="policyopt-harness-")
        scratch = tempfile.mkdtemp(prefix="policyopt-box-")
        os.chmod(harness_dir, 0o755)
        for name, content in {"inside.py": _read_inside(), **files}.items():
            path = os.path.join(harness_dir, name)
            with open(path, "wb") as f:
                f.write(content)
            os.chmod(path, 0o444)
        if uid is not None:
            os.chown(scratch, uid, uid)
        stdin_fd = _stdin_fd(stdin)
        argv = [*as_user(uid), self.prlimit, *rlimit_args(limits, n_phases, _nproc_extra(uid)), "--",
                self.interpreter, "-I", "-S", "-B", os.path.join(harness_dir, "inside.py"), str(channel_w),
                os.path.join(harness_dir, "job.marshal")]
        launch = Launch(argv=argv, env=sandbox_env(scratch), uid=uid, stdin_fd=stdin_fd,
                        pass_fds=(channel_w,), close_after_spawn=(channel_w,), cwd=scratch)

        def cleanup() -> None:
            with contextlib.suppress(OSError):
                os.close(stdin_fd)
            shutil.rmtree(harness_dir, ignore_errors=True)
            shutil.rmtree(scratch, ignore_errors=True)
            if uid is not None:
                remove_files_of(uid, WORLD_WRITABLE)
        return Prepared(launch, cleanup)


WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")
"""Host directories the weak backend's dedicated uid can write to; swept after each of its runs."""


def remove_files_of(uid: int, roots: tuple[str, ...]) -> int:
    """Delete what ``uid`` created directly under ``roots`` (trees included); returns how many entries.

    Only for a dedicated sandbox uid, after its processes are gone: nothing else owns those files.
    """
    removed = 0
    for root in roots:
        try:
            entries = list(os.scandir(root))
        except OSError:
            continue
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                removed += 1
    return removed


def _read_inside() -> bytes:
    with open(_INSIDE, "rb") as f:
        return f.read()


def make_backend(name: str, interpreter: str, seccomp: bool = True) -> BwrapBackend | SubprocessBackend:
    if name == "bwrap":
        return BwrapBackend(interpreter, seccomp)
    if name == "subprocess":
        return SubprocessBackend(interpreter)
    raise ValueError(f"unknown sandbox backend {name!r}; expected 'bwrap' or 'subprocess'")
