"""The grader, which lives in the parent: test cases, exact comparisons, and verdicts from raw runs.

Trust boundary. The program inside the sandbox (``_inside.py`` plus the candidate, in one process)
reports only *observations*: "started", "compile error", "test k raised X", "test k evaluated to
V". Expected outputs never enter the sandbox, and verdicts are decided here by comparing the
observed value with the expected one exactly (type-exact, length-checked, no prefix or ``zip``
truncation). So a candidate that prints "PASS", exits with status 0 before the tests, monkeypatches
``builtins`` or ``assert``, overwrites a test function or forges lines on the result channel can
at most claim a value it could have returned anyway; it cannot produce PASS without the right
answer. Conflicting claims about one test make that test FAIL; missing claims are FAIL too.
"""

from __future__ import annotations

import ast
import math
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from policyopt.lm.sandbox.process import RawRun
from policyopt.lm.sandbox.verdicts import Verdict, is_unscorable

CompareMode = Literal["exact", "lines", "tokens"]
_TAGS = {"l": list, "t": tuple, "s": set, "fs": frozenset}
_FAILURE_KIND = {"memory": Verdict.MEMORY, "output_limit": Verdict.OUTPUT_LIMIT, "runtime": Verdict.RUNTIME_ERROR,
                 "compile": Verdict.COMPILE_ERROR, "wrong_type": Verdict.FAIL}
_KILLED = {"wall": Verdict.TIMEOUT, "cpu": Verdict.TIMEOUT, "stdout": Verdict.OUTPUT_LIMIT,
           "stderr": Verdict.OUTPUT_LIMIT, "channel": Verdict.OUTPUT_LIMIT}


def encode_value(value: Any, depth: int = 0) -> Any:
    """Tagged JSON of plain data (the format ``_inside.py`` writes). Raises TypeError on anything else."""
    if depth > 64:
        raise TypeError("value nested deeper than 64 levels")
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    for tag, container in _TAGS.items():
        if kind is container:
            return {tag: [encode_value(v, depth + 1) for v in value]}
    if kind is dict:
        return {"d": [[encode_value(k, depth + 1), encode_value(v, depth + 1)] for k, v in value.items()]}
    if kind is bytes:
        return {"by": value.hex()}
    raise TypeError(f"expected values must be plain data (None, bool, int, float, str, bytes, list, tuple, "
                    f"dict, set, frozenset), got {kind.__name__}")


def decode_value(obj: Any, depth: int = 0) -> Any:
    """Inverse of :func:`encode_value`; raises ValueError on anything malformed (a forged payload)."""
    if depth > 64:
        raise ValueError("payload nested too deep")
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if type(obj) is not dict or len(obj) != 1:
        raise ValueError(f"malformed payload {str(obj)[:80]!r}")
    (tag, items), = obj.items()
    if tag == "by" and isinstance(items, str):
        return bytes.fromhex(items)
    if not isinstance(items, list):
        raise ValueError(f"malformed payload for tag {tag!r}")
    if tag in _TAGS:
        try:
            return _TAGS[tag](decode_value(v, depth + 1) for v in items)
        except TypeError as exc:  # unhashable set element
            raise ValueError(str(exc)) from None
    if tag == "d":
        out = {}
        for pair in items:
            if not isinstance(pair, list) or len(pair) != 2:
                raise ValueError("malformed dict item")
            try:
                out[decode_value(pair[0], depth + 1)] = decode_value(pair[1], depth + 1)
            except TypeError as exc:
                raise ValueError(str(exc)) from None
        return out
    raise ValueError(f"unknown payload tag {tag!r}")


def values_equal(got: Any, want: Any, float_tol: float = 0.0) -> bool:
    """Exact structural equality: same types at every level (``True != 1``, ``(1,) != [1]``), same
    lengths, same keys; floats equal (or within ``float_tol`` relative/absolute), NaN equals NaN."""
    if type(got) is not type(want):
        return False
    if isinstance(want, float):
        if math.isnan(want) or math.isnan(got):
            return math.isnan(want) and math.isnan(got)
        return got == want or (float_tol > 0 and math.isclose(got, want, rel_tol=float_tol, abs_tol=float_tol))
    if isinstance(want, (list, tuple)):
        return len(got) == len(want) and all(values_equal(g, w, float_tol) for g, w in zip(got, want))
    if isinstance(want, dict):
        return got.keys() == want.keys() and all(values_equal(got[k], want[k], float_tol) for k in want)
    return got == want


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def outputs_equal(actual: bytes, expected: str, mode: CompareMode = "lines") -> bool:
    """Compare program output with the expected text. ``exact``: byte-identical; ``lines``: same
    number of lines, each equal after stripping trailing whitespace (trailing blank lines ignored);
    ``tokens``: same whitespace-separated tokens. All are length-checked: a correct prefix fails."""
    try:
        text = actual.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if mode == "exact":
        return text == expected
    if mode == "lines":
        return _lines(text) == _lines(expected)
    if mode == "tokens":
        return text.split() == expected.split()
    raise ValueError(f"unknown compare mode {mode!r}; expected 'exact', 'lines' or 'tokens'")


RAN: Any = type("Ran", (), {"__repr__": lambda self: "RAN"})()
"""Expected-value sentinel: the item passes if it ran without failure (SQL execution, benchmarks)."""


@dataclass(frozen=True)
class CallTest:
    """A function-call test: ``expression`` is evaluated in the candidate's namespace inside the
    sandbox; ``expected`` (plain data) stays in the parent and is compared with :func:`values_equal`."""

    expression: str
    expected: Any

    def __post_init__(self) -> None:
        try:
            compile(self.expression, "<test>", "eval")
        except SyntaxError as exc:
            raise ValueError(f"CallTest.expression is not a Python expression: {self.expression!r} ({exc})") from None
        encode_value(self.expected)


@dataclass(frozen=True)
class IOTest:
    """A stdin/stdout test: the program reads ``stdin`` and must print ``expected_stdout``."""

    stdin: str
    expected_stdout: str


def call_test(function: str, *args: Any, expected: Any) -> CallTest:
    """``call_test("add", 1, 2, expected=3)`` -> ``CallTest("add(1, 2)", 3)``; args must be literals."""
    for arg in args:
        encode_value(arg)
        if ast.literal_eval(repr(arg)) != arg:
            raise ValueError(f"argument {arg!r} does not round-trip through repr()")
    return CallTest(f"{function}({', '.join(repr(a) for a in args)})", expected)


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.copy_location(ast.Name(self.new, node.ctx), node) if node.id == self.old else node


def tests_from_asserts(source: str, entry_point: str | None = None,
                       candidate_name: str = "candidate") -> list[CallTest]:
    """Split ``assert EXPR == LITERAL`` lines (HumanEval/MBPP style, also inside ``def check(candidate)``)
    into :class:`CallTest` s, so the expected side never enters the sandbox. ``candidate`` is renamed
    to ``entry_point``. Any other kind of assert raises ValueError naming its line."""
    tests = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Assert):
            continue
        test = node.test
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
            raise ValueError(f"line {node.lineno}: only 'assert <expr> == <literal>' is supported")
        left, right = test.left, test.comparators[0]
        try:
            expected = ast.literal_eval(right)
        except ValueError:
            left, right = right, left
            try:
                expected = ast.literal_eval(right)
            except ValueError:
                raise ValueError(f"line {node.lineno}: neither side of == is a literal") from None
        if entry_point is not None:
            left = _Rename(candidate_name, entry_point).visit(left)
        tests.append(CallTest(ast.unparse(left), expected))
    return tests


@dataclass(frozen=True)
class TestResult:
    """Verdict of one test, with a short detail (exception name, mismatch, ...)."""

    verdict: Verdict
    detail: str = ""


@dataclass(frozen=True)
class TestReport:
    """All per-test verdicts of one candidate, plus the cost of producing them."""

    results: tuple[TestResult, ...]
    runs: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0

    @property
    def verdicts(self) -> list[Verdict]:
        return [r.verdict for r in self.results]

    @property
    def pass_fraction(self) -> float | None:
        """Passed / total, or None if any test hit an infrastructure failure (unscorable)."""
        if is_unscorable(self.verdicts):
            return None
        return sum(v is Verdict.PASS for v in self.verdicts) / len(self.results) if self.results else 0.0

    @property
    def all_passed(self) -> bool | None:
        fraction = self.pass_fraction
        return None if fraction is None else fraction == 1.0


def _has(raw: RawRun, key: str) -> dict | None:
    return next((m for m in raw.messages if key in m), None)


def _started(raw: RawRun) -> bool:
    return raw.spawn_error is None and raw.leftover == 0 and bool(raw.messages) and raw.messages[0] == {"ready": 1}


def death_verdict(raw: RawRun, cpu_budget_s: float) -> Verdict:
    """How a process that did not finish its job ended, as a verdict."""
    if raw.killed is not None:
        return _KILLED[raw.killed]
    if raw.signal == signal.SIGXCPU or (raw.signal == signal.SIGKILL and raw.cpu_s >= cpu_budget_s):
        return Verdict.TIMEOUT  # the kernel's RLIMIT_CPU backstop
    if raw.signal == signal.SIGXFSZ:
        return Verdict.OUTPUT_LIMIT
    return Verdict.FAIL if raw.returncode == 0 else Verdict.RUNTIME_ERROR


def run_verdict(raw: RawRun, cpu_budget_s: float) -> TestResult:
    """Verdict of a whole-program run (``script`` mode): PASS means it exited 0 within its limits."""
    if not _started(raw):
        return TestResult(Verdict.SANDBOX_ERROR, raw.spawn_error or _infra_detail(raw))
    if (m := _has(raw, "compile_error")) is not None:
        return TestResult(Verdict.COMPILE_ERROR, str(m["compile_error"])[:200])
    if raw.killed is not None:
        return TestResult(_KILLED[raw.killed], f"killed: {raw.killed}")
    if (m := _has(raw, "error")) is not None and isinstance(m["error"], dict):
        kind = _FAILURE_KIND.get(m["error"].get("kind"), Verdict.RUNTIME_ERROR)
        return TestResult(kind, str(m["error"].get("error")))
    if raw.returncode != 0:
        verdict = death_verdict(raw, cpu_budget_s)
        return TestResult(verdict, f"exit {raw.returncode} signal {raw.signal}")
    return TestResult(Verdict.PASS)


def _infra_detail(raw: RawRun) -> str:
    if raw.leftover:
        return f"{raw.leftover} sandbox processes survived the kill"
    return "interpreter did not start: " + raw.stderr.decode(errors="replace")[-300:]


def _result_from_message(message: dict, expected: Any, float_tol: float) -> TestResult:
    if isinstance(message.get("failure"), dict):
        failure = message["failure"]
        return TestResult(_FAILURE_KIND.get(failure.get("kind"), Verdict.RUNTIME_ERROR), str(failure.get("error")))
    if expected is RAN:
        return TestResult(Verdict.PASS, "ran")
    if "value" not in message:
        return TestResult(Verdict.FAIL, "no value")
    try:
        got = decode_value(message["value"])
    except ValueError as exc:
        return TestResult(Verdict.FAIL, f"malformed value: {exc}")
    if values_equal(got, expected, float_tol):
        return TestResult(Verdict.PASS)
    return TestResult(Verdict.FAIL, f"got {str(got)[:60]}")


def grade_calls(raw: RawRun, indices: Sequence[int], expected: Sequence[Any], cpu_budget_s: float,
                float_tol: float = 0.0) -> tuple[dict[int, TestResult], list[int]]:
    """Per-test results of one ``calls``/``sql`` run over ``indices``, and the indices to rerun in a
    fresh process (those after a test that killed the process), in order."""
    if not _started(raw):
        return {i: TestResult(Verdict.SANDBOX_ERROR, raw.spawn_error or _infra_detail(raw)) for i in indices}, []
    if (m := _has(raw, "compile_error")) is not None:
        return {i: TestResult(Verdict.COMPILE_ERROR, str(m["compile_error"])[:200]) for i in indices}, []
    if (m := _has(raw, "setup_error")) is not None and isinstance(m["setup_error"], dict):
        kind = _FAILURE_KIND.get(m["setup_error"].get("kind"), Verdict.RUNTIME_ERROR)
        return {i: TestResult(kind, "error while defining the candidate") for i in indices}, []
    wanted, seen, conflicts, last_begun = set(indices), {}, set(), None
    for message in raw.messages:
        if type(message.get("begin")) is int and message["begin"] in wanted:
            last_begun = message["begin"]
        index = message.get("result")
        if type(index) is int and index in wanted:
            if index in seen:
                conflicts.add(index)
            seen.setdefault(index, message)
    results = {i: (TestResult(Verdict.FAIL, "conflicting results") if i in conflicts
                   else _result_from_message(seen[i], expected[i], float_tol)) for i in seen}
    pending = [i for i in indices if i not in results]
    finished = _has(raw, "done") is not None and raw.killed is None
    if not pending or finished:
        results.update({i: TestResult(Verdict.FAIL, "no result") for i in pending})
        return results, []
    died = death_verdict(raw, cpu_budget_s)
    if last_begun is None or last_begun not in pending:
        results.update({i: TestResult(died, "process ended before the test") for i in pending})
        return results, []
    position = pending.index(last_begun)
    results[last_begun] = TestResult(died, "process ended during the test")
    results.update({i: TestResult(Verdict.FAIL, "no result") for i in pending[:position]})
    return results, pending[position + 1:]


# Not pytest tests, despite their names (they are imported into test modules).
tests_from_asserts.__test__ = False  # type: ignore[attr-defined]
TestResult.__test__ = False  # type: ignore[attr-defined]
TestReport.__test__ = False  # type: ignore[attr-defined]
