"""Resource limits of one sandboxed execution, and how they are applied.

Two kinds of limit, enforced by two different parties:

- **rlimits** (address space, CPU seconds, processes, file size, open files, core dumps) are set by
  the kernel on the process before the interpreter starts (``prlimit`` runs them in C before
  ``exec``: no ``preexec_fn``, which is unsafe in a threaded trainer). The candidate cannot raise a
  hard limit.
- **wall-clock, CPU-budget and output caps** are enforced by the *parent*: it polls the process
  tree, kills the whole tree / PID namespace with ``SIGKILL`` and reaps it. Nothing relies on
  signals or asyncio inside the child, which CPU-bound or signal-ignoring code defeats.
"""

from __future__ import annotations

import math
from typing import Annotated

import pydantic

from policyopt.core.config import configclass

_MB = 1 << 20


@configclass
class Limits:
    """Per-execution budget. Defaults fit a unit-test run of a short Python function."""

    wall_timeout_s: Annotated[float, pydantic.Field(gt=0, le=3600)] = 2.0
    """Wall-clock budget (seconds) per run, and per test when several tests share one process."""
    cpu_time_s: Annotated[float, pydantic.Field(gt=0, le=3600)] = 2.0
    """CPU-time budget (user+system seconds of the whole process tree), checked by the parent."""
    memory_mb: Annotated[int, pydantic.Field(ge=32, le=1 << 20)] = 512
    """Address-space limit (RLIMIT_AS) of every process in the sandbox, in MiB."""
    max_processes: Annotated[int, pydantic.Field(ge=1, le=4096)] = 16
    """RLIMIT_NPROC: processes (and threads) the sandbox user may have; caps fork bombs."""
    max_file_mb: Annotated[int, pydantic.Field(ge=1, le=1 << 20)] = 8
    """RLIMIT_FSIZE: largest file the candidate may write, in MiB."""
    scratch_mb: Annotated[int, pydantic.Field(ge=1, le=1 << 20)] = 32
    """Size of the private writable scratch directory (tmpfs under bwrap), in MiB."""
    max_open_files: Annotated[int, pydantic.Field(ge=16, le=1 << 20)] = 64
    """RLIMIT_NOFILE: open file descriptors per process."""
    output_bytes: Annotated[int, pydantic.Field(ge=64, le=1 << 30)] = 1 << 16
    """Cap on captured stdout and on stderr (each); exceeding it kills the run (OUTPUT_LIMIT)."""
    channel_bytes: Annotated[int, pydantic.Field(ge=1024, le=1 << 30)] = 1 << 22
    """Cap on the structured result channel written by the harness."""


def rlimit_args(limits: Limits, n_phases: int = 1, extra_processes: int = 0) -> list[str]:
    """``prlimit`` options for ``limits``: soft == hard for all but CPU (soft + 1 s, then SIGKILL).

    ``n_phases`` scales the kernel CPU backstop when several timed tests share one process (the
    parent still enforces ``cpu_time_s`` per test). ``extra_processes`` is added to RLIMIT_NPROC
    when the sandbox runs under an account that already owns processes (non-root hosts).
    """
    if n_phases < 1:
        raise ValueError(f"n_phases must be >= 1, got {n_phases}")
    cpu = math.ceil(limits.cpu_time_s * n_phases) + 1
    nproc = limits.max_processes + 2 + extra_processes  # + the launcher and bwrap's own process
    return [
        f"--as={limits.memory_mb * _MB}",
        f"--cpu={cpu}:{cpu + 1}",
        f"--nproc={nproc}",
        f"--fsize={limits.max_file_mb * _MB}",
        f"--nofile={limits.max_open_files}",
        "--core=0",
    ]
