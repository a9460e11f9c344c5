"""Fail closed, trust levels, the weak backend, infrastructure errors -> unscorable, the pool."""

from __future__ import annotations

import dataclasses
import os
import shutil

import pytest

from policyopt.core.config import ConfigError
from policyopt.lm import code_rewards
from policyopt.lm.sandbox import (
    CallTest,
    Sandbox,
    SandboxConfig,
    SandboxPool,
    SandboxUnavailable,
    Verdict,
)
from policyopt.lm.sandbox import backends as backends_module

from .conftest import FAST, SAFE, UID_BASE, UID_SLOTS


def test_missing_bwrap_refuses_to_run(monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(backends_module.shutil, "which", lambda name: None if name == "bwrap" else real_which(name))
    with pytest.raises(SandboxUnavailable, match="bwrap"):
        Sandbox()
    # the weak backend is not a fallback: it must be asked for, and declared trusted
    with pytest.raises(ConfigError, match="sandbox.trust"):
        Sandbox({"backend": "subprocess"})
    weak = Sandbox({"backend": "subprocess", "trust": "trusted", "uid_base": UID_BASE, "uid_slots": UID_SLOTS})
    assert weak.trust_level == "weak" and weak.backend.name == "subprocess"


def test_seccomp_unavailable_on_this_arch_refuses(monkeypatch):
    monkeypatch.setattr(backends_module, "deny_list_program", lambda: None)
    with pytest.raises(SandboxUnavailable, match="seccomp"):
        Sandbox()


def test_unknown_config_key_is_named():
    with pytest.raises(ConfigError, match="sandbox.limits.wall_timeout_s"):
        Sandbox({"limits": {"wall_timeout_s": -1}})
    with pytest.raises(ConfigError, match="sandbox.backnd: unknown key"):
        Sandbox({"backnd": "bwrap"})


def test_bwrap_that_breaks_at_run_time_is_unscorable_not_zero(box, monkeypatch):
    monkeypatch.setattr(box.backend, "bwrap", "/bin/false")  # the sandbox now fails before Python starts
    result, _ = box.run("print(1)")
    assert result.verdict is Verdict.SANDBOX_ERROR
    report = box.run_call_tests("def f():\n    return 1\n", [CallTest("f()", 1)])
    assert report.verdicts == [Verdict.SANDBOX_ERROR] and report.pass_fraction is None
    reward = code_rewards.UnitTestReward(box)
    scores = reward(["p"], ["def f():\n    return 1\n"], [{"tests": [CallTest("f()", 1)]}])
    assert scores == [None]
    assert reward.last_metrics["verdict/sandbox_error"] == 1.0 and reward.last_metrics["reward/unscorable_frac"] == 1.0


def test_spawn_failure_is_unscorable(box, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("no memfd for you")

    monkeypatch.setattr(box.backend, "prepare", boom)
    report = box.run_call_tests("def f():\n    return 1\n", [CallTest("f()", 1)])
    assert report.verdicts == [Verdict.SANDBOX_ERROR] and report.pass_fraction is None


def test_weak_backend_enforces_limits_but_not_isolation(host):
    weak = Sandbox(SandboxConfig(backend="subprocess", trust="trusted", limits=SAFE, uid_base=UID_BASE,
                                 uid_slots=UID_SLOTS))
    result, raw = weak.run("import os\nprint(os.environ.get('POLICYOPT_TEST_SECRET'), os.path.exists('/usr/bin'))\n")
    assert result.verdict is Verdict.PASS and raw.stdout == b"None True\n"  # env scrubbed, filesystem visible
    result, raw = weak.run("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(100)\n"
                           "while True:\n    pass\n", limits=FAST)
    assert result.verdict is Verdict.TIMEOUT and raw.leftover == 0
    assert weak.run("x = bytearray(10**10)\n")[0].verdict is Verdict.MEMORY
    if os.geteuid() == 0:  # the weak backend CAN write /tmp (no isolation) but sweeps its uid's files after
        result, raw = weak.run("import os\nos.makedirs('/tmp/policyopt-weak-trace/sub')\n"
                               "open('/tmp/policyopt-weak-trace.txt', 'w').write('x')\nprint('written')\n")
        assert result.verdict is Verdict.PASS and raw.stdout == b"written\n"
        assert not os.path.exists("/tmp/policyopt-weak-trace") and not os.path.exists("/tmp/policyopt-weak-trace.txt")


def test_pool_runs_in_parallel_and_keeps_order(box):
    sources = [f"def f():\n    return {i}\n" for i in range(6)]
    with SandboxPool(workers=2) as pool:
        reports = pool.map(lambda s: box.run_call_tests(s, [CallTest("f()", 3)]), sources)
        assert [r.verdicts[0] for r in reports] == [Verdict.PASS if i == 3 else Verdict.FAIL for i in range(6)]
        assert pool.executions == 6 and pool.executions_per_s > 0
        assert pool.stats()["sandbox/workers"] == 2.0
    with pytest.raises(ValueError):
        SandboxPool(workers=0)


def test_concurrent_runs_use_distinct_uids(box):
    if os.geteuid() != 0:
        pytest.skip("dedicated uids are only used when the parent is root")
    source = "import os, time\ntime.sleep(0.3)\nprint(os.getuid())\n"
    with SandboxPool(workers=3) as pool:
        outs = pool.map(lambda _: box.run(source)[1].stdout, range(3))
    uids = {int(o) for o in outs}
    assert len(uids) == 3 and all(UID_BASE <= u < UID_BASE + UID_SLOTS for u in uids)


def test_timeout_inside_call_tests_marks_the_rest(box):
    source = "def f(x):\n    while x == 1:\n        pass\n    return x\n"
    tests = [CallTest("f(0)", 0), CallTest("f(1)", 1), CallTest("f(2)", 2)]
    report = box.run_call_tests(source, tests, limits=FAST)
    assert report.verdicts == [Verdict.PASS, Verdict.TIMEOUT, Verdict.TIMEOUT]
    exact = Sandbox(SandboxConfig(limits=FAST, rerun_after_timeout=True, uid_base=UID_BASE, uid_slots=UID_SLOTS))
    report = exact.run_call_tests(source, tests)
    assert report.verdicts == [Verdict.PASS, Verdict.TIMEOUT, Verdict.PASS] and report.runs == 2


def test_crash_inside_a_test_reruns_the_rest(box):
    source = "import os\ndef f(x):\n    if x == 1:\n        os._exit(3)\n    return [0] * (10**9) if x == 2 else x\n"
    tests = [CallTest("f(0)", 0), CallTest("f(1)", 1), CallTest("f(2)", 2), CallTest("f(3)", 3)]
    report = box.run_call_tests(source, tests, limits=dataclasses.replace(SAFE, memory_mb=256))
    assert report.verdicts == [Verdict.PASS, Verdict.RUNTIME_ERROR, Verdict.MEMORY, Verdict.PASS]
    assert report.runs == 2
