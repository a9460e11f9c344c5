"""Run model-generated code safely and grade it: backends, limits, verdicts, harness, worker pool.

See docs/sandbox.md. The public surface::

    Sandbox, SandboxConfig, SandboxUnavailable, Limits, Verdict, verdict_fractions,
    CallTest, IOTest, call_test, tests_from_asserts, TestReport, TestResult, SandboxPool
"""

from policyopt.lm.sandbox.backends import SandboxUnavailable
from policyopt.lm.sandbox.harness import (
    CallTest,
    IOTest,
    TestReport,
    TestResult,
    call_test,
    outputs_equal,
    tests_from_asserts,
    values_equal,
)
from policyopt.lm.sandbox.limits import Limits
from policyopt.lm.sandbox.pool import SandboxPool
from policyopt.lm.sandbox.sandbox import Sandbox, SandboxConfig
from policyopt.lm.sandbox.verdicts import Verdict, is_unscorable, verdict_fractions

__all__ = [
    "CallTest", "IOTest", "Limits", "Sandbox", "SandboxConfig", "SandboxPool", "SandboxUnavailable",
    "TestReport", "TestResult", "Verdict", "call_test", "is_unscorable", "outputs_equal", "tests_from_asserts",
    "values_equal", "verdict_fractions",
]
