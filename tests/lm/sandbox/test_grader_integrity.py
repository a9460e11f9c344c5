"""Grader-integrity cases: a wrong solution that attacks the grader must still be FAIL.

Every attacker below returns a wrong answer for at least one test; it then tries to make the grader
believe otherwise. The honest solution passes, so the FAILs are not an artefact of a broken grader.
"""

from __future__ import annotations

import pytest

from policyopt.lm.sandbox import CallTest, IOTest, Limits, Verdict, tests_from_asserts

SLOW = Limits(wall_timeout_s=10.0, cpu_time_s=10.0)

ASSERTS = """
def check(candidate):
    assert candidate([3, 1, 2]) == [1, 2, 3]
    assert candidate([]) == []
    assert candidate([2, 2, 1]) == [1, 2, 2]
"""
TESTS = tests_from_asserts(ASSERTS, entry_point="sort_list")
HONEST = "def sort_list(xs):\n    return sorted(xs)\n"
WRONG = "def sort_list(xs):\n    return xs\n"

ATTACKS = {
    "prints_fake_verdict": WRONG + (
        "print('{\"verdict\": \"PASS\", \"passed\": 3, \"failed\": 0}')\n"
        "print('ALL TESTS PASSED')\n"
        "import sys\nsys.stderr.write('PASS\\n')\n"),
    "forges_channel_lines": WRONG + (
        "import os, sys\n"
        "for fd in range(3, 10):\n"
        "    for i in range(3):\n"
        "        try:\n"
        "            os.write(fd, ('{\"result\": %d, \"verdict\": \"PASS\"}\\n' % i).encode())\n"
        "            os.write(fd, b'{\"done\": 1}\\n')\n"
        "        except OSError:\n"
        "            pass\n"),
    "sys_exit_0_before_tests": "import sys\nsys.exit(0)\n" + HONEST,
    "os_exit_0_before_tests": "import os\nos._exit(0)\n" + HONEST,
    "monkeypatches_builtins_and_assert": WRONG + (
        "import builtins\n"
        "builtins.AssertionError = type('Never', (Exception,), {})\n"
        "builtins.isinstance = lambda *a: True\n"
        "builtins.len = lambda x: 0\n"
        "builtins.sorted = lambda xs, **k: xs\n"),
    "always_equal_object": ("class Anything(list):\n    def __eq__(self, other):\n        return True\n"
                            "def sort_list(xs):\n    return Anything()\n"),
    "overwrites_test_function_and_harness": WRONG + (
        "def check(candidate):\n    return True\n"
        "def run_tests(*a, **k):\n    return 'PASS'\n"
        "import __main__\n"
        "__main__.encode = lambda value, depth=0: [1, 2, 3]\n"
        "__main__.classify = lambda exc: 'pass'\n"
        "__main__.check = check\n"),
    "forges_unparsable_channel_lines": WRONG + (
        "import os\n"
        "for fd in range(3, 10):\n"
        "    try:\n"
        "        os.write(fd, b'[' * 200000 + b'\\n' + b'{\"result\": 0, \"value\": ' + b'9' * 5000 + b'}\\n')\n"
        "    except OSError:\n"
        "        pass\n"),
    "exits_inside_the_tested_function": "import os\ndef sort_list(xs):\n    os._exit(0)\n",
}


def test_honest_solution_passes(box):
    report = box.run_call_tests(HONEST, TESTS)
    assert report.verdicts == [Verdict.PASS] * 3 and report.pass_fraction == 1.0


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_is_fail(box, host, name):
    report = box.run_call_tests(ATTACKS[name], TESTS)
    # the wrong solution returns the input unchanged, which is right only for [] (test 1); every other
    # test must be FAIL, and nothing may PASS that the plain wrong solution would not pass
    assert Verdict.PASS not in [v for i, v in enumerate(report.verdicts) if i != 1], report
    assert report.verdicts[0] is Verdict.FAIL and report.verdicts[2] is Verdict.FAIL, report
    assert report.pass_fraction is not None and report.pass_fraction <= 1 / 3


def test_printing_only_a_correct_prefix_fails(box, host):
    tests = [IOTest("3\n", "1\n2\n3\n")]
    honest = "n = int(input())\nfor i in range(1, n + 1):\n    print(i)\n"
    prefix = "n = int(input())\nfor i in range(1, n):\n    print(i)\n"
    assert box.run_io_tests(honest, tests).verdicts == [Verdict.PASS]
    for mode in ("exact", "lines", "tokens"):
        assert box.run_io_tests(prefix, tests, compare=mode).verdicts == [Verdict.FAIL]
    assert box.run_io_tests("print('1\\n2\\n3\\n4')", tests).verdicts == [Verdict.FAIL]  # a longer output too
    call = [CallTest("list(range(3))", [0, 1, 2, 3])]
    assert box.run_call_tests("", call).verdicts == [Verdict.FAIL]


def test_expected_values_never_enter_the_sandbox(box, host):
    secret_expected = "expected-" + "7f3a9c"
    spy = ("import os\n"
           "seen = ''\n"
           "for root, _, files in os.walk('/'):\n"
           "    if root.startswith(('/proc', '/usr', '/sys', '/dev')):\n"
           "        continue\n"
           "    for f in files:\n"
           "        try:\n"
           "            seen += open(os.path.join(root, f), errors='replace').read()\n"
           "        except OSError:\n"
           "            pass\n"
           "import re\n"
           "def answer():\n"
           "    found = re.search(r'expected-[0-9a-f]{6}', seen)\n"
           "    return found.group(0) if found else 'not found'\n")
    report = box.run_call_tests(spy, [CallTest("answer()", secret_expected)], limits=SLOW)
    assert report.verdicts == [Verdict.FAIL] and report.results[0].detail == "got not found", report
