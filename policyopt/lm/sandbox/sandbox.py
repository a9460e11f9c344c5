"""``Sandbox``: run untrusted Python (and SQL) under a chosen backend and trust level, and grade it.

    from policyopt.lm.sandbox import Sandbox, SandboxConfig, CallTest

    box = Sandbox()                                   # bwrap; refuses to start if bwrap cannot run
    report = box.run_call_tests("def add(a, b):\\n    return a + b\\n",
                                [CallTest("add(1, 2)", 3), CallTest("add(-1, 1)", 0)])
    report.verdicts, report.pass_fraction             # [PASS, PASS], 1.0

Trust levels: ``trust="untrusted"`` (default) accepts only the isolating ``bwrap`` backend;
``backend="subprocess"`` (no filesystem/network isolation) requires ``trust="trusted"``, an explicit
statement that the code is yours (e.g. reference solutions). There is no automatic fallback: an
unavailable backend raises :class:`SandboxUnavailable` at construction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import marshal
import os
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import pydantic

from policyopt.core.config import ConfigError, build, configclass
from policyopt.lm.sandbox.backends import SandboxUnavailable, make_backend, resolve_interpreter
from policyopt.lm.sandbox.harness import (
    RAN,
    CallTest,
    CompareMode,
    IOTest,
    TestReport,
    TestResult,
    decode_value,
    grade_calls,
    outputs_equal,
    run_verdict,
)
from policyopt.lm.sandbox.limits import Limits
from policyopt.lm.sandbox.process import RawRun, UidSlots, enable_subreaper, execute
from policyopt.lm.sandbox.verdicts import Verdict


@configclass
class SandboxConfig:
    """Which isolation to use, how much to trust the code, and its resource limits."""

    backend: Literal["bwrap", "subprocess"] = "bwrap"
    """``bwrap`` (namespaces, read-only system, private tmpfs, no network) or ``subprocess`` (rlimits only)."""
    trust: Literal["untrusted", "trusted"] = "untrusted"
    """``untrusted`` code may only run under bwrap; ``trusted`` is the explicit opt-in to ``subprocess``."""
    seccomp: bool = True
    """bwrap: also load a seccomp deny-list (ptrace, namespaces, mounts, keyrings, bpf, io_uring, ...)."""
    interpreter: str = "auto"
    """Python run inside; ``auto`` = ``/usr/bin/python3`` if present, else this interpreter's base."""
    limits: Limits = dataclasses.field(default_factory=Limits)
    """Default per-run limits (each call may pass its own)."""
    uid_base: Annotated[int, pydantic.Field(ge=1000, le=4_000_000_000)] = 61000
    """First dedicated host uid for runs when the parent is root (one uid per concurrent run)."""
    uid_slots: Annotated[int, pydantic.Field(ge=1, le=4096)] = 64
    """How many dedicated uids (the most concurrent runs across all processes on the host)."""
    max_reruns: Annotated[int, pydantic.Field(ge=0, le=10_000)] = 64
    """After a test kills the process, the remaining tests rerun in a fresh one, at most this often."""
    rerun_after_timeout: bool = False
    """Also rerun the remaining tests after a TIMEOUT (exact per-test verdicts, but every hanging test
    costs a full wall budget); by default the tests after a timed-out one are TIMEOUT too."""


def _utf8(text: str) -> bytes:
    """Model output may hold lone surrogates; pass them through and let the compiler reject them."""
    return text.encode("utf-8", "surrogatepass")


def check_trust(config: SandboxConfig, prefix: str = "sandbox") -> None:
    """The weak backend needs ``trust='trusted'``: raise ConfigError naming ``<prefix>.trust`` otherwise."""
    if config.backend != "bwrap" and config.trust != "trusted":
        raise ConfigError(f"{prefix}.trust: backend {config.backend!r} does not isolate the filesystem or "
                          "network; set trust='trusted' to run code you trust with it (got 'untrusted')")


class Sandbox:
    """Runs candidate code; thread-safe (a :class:`~policyopt.lm.sandbox.pool.SandboxPool` shares one)."""

    def __init__(self, config: SandboxConfig | dict | None = None) -> None:
        if not isinstance(config, SandboxConfig):
            config = build(SandboxConfig, config, "sandbox")
        check_trust(config)
        self.config = config
        self.backend = make_backend(config.backend, resolve_interpreter(config.interpreter), config.seccomp)
        self.slots = UidSlots(config.uid_base, config.uid_slots) if os.geteuid() == 0 else None
        if self.slots is not None and not self.backend.isolated:
            enable_subreaper()  # weak backend: setsid orphans would otherwise linger as zombies
        with self._uid() as uid:
            reason = self.backend.unavailable_reason(uid)
        if reason is not None:
            raise SandboxUnavailable(f"sandbox backend {config.backend!r} is unavailable: {reason}")

    @property
    def trust_level(self) -> str:
        """``isolated`` (bwrap) or ``weak`` (subprocess + rlimits), for logs and reports."""
        return "isolated" if self.backend.isolated else "weak"

    def _uid(self) -> contextlib.AbstractContextManager[int | None]:
        return self.slots.acquire() if self.slots is not None else contextlib.nullcontext(None)

    def execute(self, job: dict, files: dict[str, bytes], stdin: bytes | None = None,
                limits: Limits | None = None, n_phases: int = 1) -> RawRun:
        """One sandboxed harness process running ``job`` (see ``_inside.py``); never raises for the
        candidate's behaviour, and reports infrastructure failures as ``RawRun.spawn_error``."""
        limits = limits or self.config.limits
        files = {**files, "job.marshal": marshal.dumps(job)}
        try:
            with self._uid() as uid:
                channel_r, channel_w = os.pipe()
                try:
                    prepared = self.backend.prepare(files, stdin, limits, uid, channel_w, n_phases)
                except BaseException:
                    os.close(channel_w)
                    raise
                try:
                    return execute(prepared.launch, channel_r, limits,
                                   total_timeout_s=limits.wall_timeout_s * (n_phases + 1))
                finally:
                    os.close(channel_r)
                    prepared.cleanup()
        except (OSError, TimeoutError, SandboxUnavailable) as exc:
            return RawRun(spawn_error=f"{type(exc).__name__}: {exc}")

    def run(self, source: str, stdin: str | bytes | None = None,
            limits: Limits | None = None) -> tuple[TestResult, RawRun]:
        """Run ``source`` as a program (``__main__``); PASS means it exited 0 within its limits."""
        limits = limits or self.config.limits
        data = stdin.encode() if isinstance(stdin, str) else stdin
        raw = self.execute({"mode": "script", "source": "candidate.py"}, {"candidate.py": _utf8(source)},
                           stdin=data, limits=limits)
        return run_verdict(raw, limits.cpu_time_s), raw

    def run_io_tests(self, source: str, tests: Sequence[IOTest], compare: CompareMode = "lines",
                     limits: Limits | None = None) -> TestReport:
        """One fresh sandbox per stdin/stdout test; output compared in the parent with ``compare``."""
        results, runs, wall, cpu = [], 0, 0.0, 0.0
        for test in tests:
            result, raw = self.run(source, stdin=test.stdin, limits=limits)
            runs, wall, cpu = runs + 1, wall + raw.wall_s, cpu + raw.cpu_s
            if result.verdict is Verdict.PASS and not outputs_equal(raw.stdout, test.expected_stdout, compare):
                result = TestResult(Verdict.FAIL, "wrong output")
            results.append(result)
        return TestReport(tuple(results), runs, wall, cpu)

    def run_call_tests(self, source: str, tests: Sequence[CallTest], limits: Limits | None = None,
                       float_tol: float = 0.0) -> TestReport:
        """All call tests in one sandboxed process (rerunning the rest in a fresh one after a test kills
        it); each expression's value is compared in the parent with ``values_equal``."""
        limits = limits or self.config.limits
        expected = [t.expected for t in tests]
        files = {"candidate.py": _utf8(source)}
        job = {"mode": "calls", "source": "candidate.py"}
        return self._graded_runs(job, files, [t.expression for t in tests], expected, limits, float_tol, "calls")

    def run_sql(self, database: str | bytes, queries: Sequence[str], limits: Limits | None = None,
                row_limit: int = 10_000) -> tuple[list[TestResult], list[Any], dict[str, list[str]] | None]:
        """Execute each query inside the sandbox, on a fresh in-memory SQLite database built from the
        SQL script ``database`` (str), or read-only on the SQLite database file whose bytes are
        ``database`` (bytes). Returns (per-query results: PASS = ran; value or None per query; schema)."""
        limits = limits or self.config.limits
        job: dict[str, Any] = {"mode": "sql", "row_limit": row_limit}
        files: dict[str, bytes] = {}
        if isinstance(database, bytes):
            job["db_file"], files["db.sqlite"] = "db.sqlite", database
        else:
            job["setup"] = database
        values: dict[int, Any] = {}
        report = self._graded_runs(job, files, list(queries), [RAN] * len(queries), limits, 0.0, "queries",
                                   capture=values)
        return list(report.results), [values.get(i) for i in range(len(queries))], values.get("schema")

    def _graded_runs(self, job: dict, files: dict[str, bytes], items: list[str], expected: list[Any],
                     limits: Limits, float_tol: float, key: str, capture: dict | None = None) -> TestReport:
        todo, results, runs, wall, cpu = list(range(len(items))), {}, 0, 0.0, 0.0
        while todo and runs <= self.config.max_reruns:
            raw = self.execute({**job, key: [[i, items[i]] for i in todo]}, files, limits=limits, n_phases=len(todo))
            runs, wall, cpu = runs + 1, wall + raw.wall_s, cpu + raw.cpu_s
            graded, todo = grade_calls(raw, todo, expected, limits.cpu_time_s, float_tol)
            results.update(graded)
            if raw.killed in ("wall", "cpu") and not self.config.rerun_after_timeout:
                results.update({i: TestResult(Verdict.TIMEOUT, "not run: an earlier test timed out") for i in todo})
                todo = []
            if capture is not None:
                for message in raw.messages:
                    if "schema" in message and "schema" not in capture:
                        capture["schema"] = message["schema"]
                    if type(message.get("result")) is int and "value" in message:
                        with contextlib.suppress(ValueError):
                            capture.setdefault(message["result"], decode_value(message["value"]))
        results.update({i: TestResult(Verdict.TIMEOUT, "rerun budget exhausted") for i in todo})
        return TestReport(tuple(results[i] for i in range(len(items))), runs, wall, cpu)

    def cpu_seconds(self, source: str, calls: Sequence[str], repeat: int,
                    limits: Limits | None = None) -> tuple[TestResult, float]:
        """Kernel-measured CPU seconds of defining ``source`` and evaluating ``calls`` ``repeat`` times
        (measured by the parent from ``wait4``; the candidate cannot forge its own timing)."""
        limits = limits or self.config.limits
        job = {"mode": "bench", "source": "candidate.py", "repeat": repeat,
               "calls": [[i, c] for i, c in enumerate(calls)]}
        raw = self.execute(job, {"candidate.py": _utf8(source)}, limits=limits, n_phases=max(1, len(calls)))
        graded, _ = grade_calls(raw, list(range(len(calls))), [RAN] * len(calls), limits.cpu_time_s)
        bad = [graded[i] for i in range(len(calls)) if graded[i].verdict is not Verdict.PASS]
        return (bad[0] if bad else TestResult(Verdict.PASS)), raw.cpu_s
