"""Pure parent-side pieces of the grader: encoding, exact comparison, assert splitting, verdicts."""

from __future__ import annotations

import math
import signal

import pytest

from policyopt.lm.sandbox import CallTest, Verdict, call_test, outputs_equal, tests_from_asserts, values_equal
from policyopt.lm.sandbox.harness import RAN, decode_value, encode_value, grade_calls, run_verdict
from policyopt.lm.sandbox.limits import Limits, rlimit_args
from policyopt.lm.sandbox.process import RawRun
from policyopt.lm.sandbox.verdicts import is_unscorable, verdict_fractions


def test_encode_decode_round_trip_keeps_exact_types():
    value = {"a": [1, 2.5, True, None], ("t", 1): {3, 4}, b"k": frozenset({"x"}), "n": (1, [2])}
    back = decode_value(encode_value(value))
    assert values_equal(back, value)
    assert type(back[("t", 1)]) is set and type(back["n"]) is tuple


@pytest.mark.parametrize("payload", [[1, 2], {"l": 5}, {"l": "abc"}, {"zz": []}, {"d": [[1]]}, {"s": [{"l": []}]},
                                     {"a": 1, "b": 2}, {"by": "zz"}, {"by": [1]}])
def test_decode_rejects_malformed_or_forged_payloads(payload):
    with pytest.raises(ValueError):
        decode_value(payload)


def test_encode_rejects_subclasses_and_objects():
    class Sneaky(int):
        def __eq__(self, other):
            return True

    with pytest.raises(TypeError):
        encode_value(Sneaky(1))
    with pytest.raises(TypeError):
        encode_value(object())


def test_values_equal_is_type_exact_and_length_checked():
    assert values_equal([1, 2, 3], [1, 2, 3])
    assert not values_equal([1, 2], [1, 2, 3])  # a prefix is not equal (no zip truncation)
    assert not values_equal([1, 2, 3], [1, 2])
    assert not values_equal(True, 1) and not values_equal(1, 1.0) and not values_equal((1,), [1])
    assert not values_equal({"a": 1}, {"a": 1, "b": 2})
    assert values_equal(math.nan, math.nan) and not values_equal(math.nan, 1.0)
    assert values_equal(0.1 + 0.2, 0.3, float_tol=1e-9) and not values_equal(0.1 + 0.2, 0.3)


def test_outputs_equal_modes():
    assert outputs_equal(b"1 2\n3\n", "1 2\n3\n", "exact")
    assert not outputs_equal(b"1 2\n3", "1 2\n3\n", "exact")
    assert outputs_equal(b"1 2  \n3\n\n", "1 2\n3", "lines")
    assert not outputs_equal(b"1 2\n", "1 2\n3\n", "lines")
    assert outputs_equal(b"1\n2 3", "1 2\n3", "tokens")
    assert not outputs_equal(b"\xff\xfe", "x", "tokens")
    with pytest.raises(ValueError):
        outputs_equal(b"", "", "fuzzy")


def test_tests_from_asserts_splits_expected_from_expression():
    src = "def check(candidate):\n    assert candidate(1, [2]) == (3, 'x')\n    assert {'k': 1} == candidate(0, [])\n"
    tests = tests_from_asserts(src, entry_point="f")
    assert tests == [CallTest("f(1, [2])", (3, "x")), CallTest("f(0, [])", {"k": 1})]
    with pytest.raises(ValueError, match="line 1"):
        tests_from_asserts("assert f(1) > 2\n")
    with pytest.raises(ValueError, match="literal"):
        tests_from_asserts("assert f(1) == g(2)\n")


def test_call_test_and_validation():
    assert call_test("add", 1, "a", expected=[1]) == CallTest("add(1, 'a')", [1])
    with pytest.raises(ValueError, match="not a Python expression"):
        CallTest("def x(): pass", 1)
    with pytest.raises(TypeError, match="plain data"):
        CallTest("f()", object())


def _raw(messages, **kw):
    return RawRun(messages=[{"ready": 1}, *messages], returncode=kw.pop("returncode", 0), **kw)


def test_grade_calls_missing_conflicting_and_resume():
    expected = [1, 2, 3, 4]
    raw = _raw([{"begin": 0}, {"result": 0, "value": 1}, {"result": 0, "value": 1}, {"begin": 1},
                {"result": 1, "value": 5}, {"begin": 2}], returncode=None, signal=signal.SIGSEGV)
    results, rerun = grade_calls(raw, [0, 1, 2, 3], expected, cpu_budget_s=1.0)
    assert results[0].verdict is Verdict.FAIL and results[0].detail == "conflicting results"
    assert results[1].verdict is Verdict.FAIL
    assert results[2].verdict is Verdict.RUNTIME_ERROR and 3 not in results and rerun == [3]
    # exited 0 before any test (sys.exit / os._exit): everything FAIL, nothing to rerun
    results, rerun = grade_calls(_raw([]), [0, 1], expected, 1.0)
    assert [r.verdict for r in results.values()] == [Verdict.FAIL, Verdict.FAIL] and rerun == []
    # killed on the wall clock during test 1
    raw = _raw([{"begin": 0}, {"result": 0, "value": 1}, {"begin": 1}], killed="wall", returncode=None,
               signal=signal.SIGKILL)
    results, rerun = grade_calls(raw, [0, 1, 2], expected, 1.0)
    assert [results[i].verdict for i in (0, 1)] == [Verdict.PASS, Verdict.TIMEOUT] and rerun == [2]


def test_grade_calls_infrastructure_failure_is_sandbox_error():
    for raw in (RawRun(spawn_error="OSError: boom"), RawRun(returncode=1, stderr=b"bwrap: no"),
                _raw([{"begin": 0}, {"result": 0, "value": 1}], leftover=2)):
        results, _ = grade_calls(raw, [0], [1], 1.0)
        assert results[0].verdict is Verdict.SANDBOX_ERROR
        assert run_verdict(raw, 1.0).verdict is Verdict.SANDBOX_ERROR


def test_grade_calls_ran_sentinel_and_failure_kinds():
    raw = _raw([{"result": 0}, {"result": 1, "failure": {"kind": "memory"}},
                {"result": 2, "failure": {"kind": "compile"}}, {"done": 1}])
    results, _ = grade_calls(raw, [0, 1, 2], [RAN] * 3, 1.0)
    assert [results[i].verdict for i in range(3)] == [Verdict.PASS, Verdict.MEMORY, Verdict.COMPILE_ERROR]


def test_run_verdict_signals():
    assert run_verdict(_raw([], returncode=None, signal=signal.SIGXCPU), 1.0).verdict is Verdict.TIMEOUT
    assert run_verdict(_raw([], returncode=None, signal=signal.SIGKILL, cpu_s=2.0), 1.0).verdict is Verdict.TIMEOUT
    assert run_verdict(_raw([], returncode=None, signal=signal.SIGXFSZ), 1.0).verdict is Verdict.OUTPUT_LIMIT
    assert run_verdict(_raw([{"compile_error": "SyntaxError"}], returncode=1), 1.0).verdict is Verdict.COMPILE_ERROR
    assert run_verdict(_raw([], returncode=3), 1.0).verdict is Verdict.RUNTIME_ERROR


def test_verdict_fractions_and_unscorable():
    fractions = verdict_fractions([Verdict.PASS, Verdict.FAIL, Verdict.PASS, Verdict.TIMEOUT])
    assert fractions["verdict/pass"] == 0.5 and fractions["verdict/timeout"] == 0.25
    assert len(fractions) == len(Verdict) and sum(fractions.values()) == pytest.approx(1.0)
    assert verdict_fractions([])["verdict/pass"] == 0.0
    assert is_unscorable([Verdict.PASS, Verdict.SANDBOX_ERROR]) and not is_unscorable([Verdict.FAIL])


def test_rlimit_args():
    args = rlimit_args(Limits(cpu_time_s=1.5, memory_mb=100, max_processes=4), n_phases=3)
    assert f"--as={100 << 20}" in args and "--cpu=6:7" in args and "--nproc=6" in args and "--core=0" in args
    with pytest.raises(ValueError):
        rlimit_args(Limits(), n_phases=0)


def test_seccomp_program_shape():
    from policyopt.lm.sandbox.seccomp import BLOCKED_SYSCALLS, deny_list_program

    x86 = deny_list_program("x86_64")
    arm = deny_list_program("aarch64")
    assert len(x86) == 8 * (4 + 2 + 2 * len(BLOCKED_SYSCALLS) + 1)  # struct sock_filter is 8 bytes
    assert len(arm) == 8 * (4 + 2 * len(BLOCKED_SYSCALLS) + 1)
    assert deny_list_program("riscv64") is None
