"""The code-execution rewards on a batch of fake completions, through the RewardFn protocol."""

from __future__ import annotations

import pytest

from policyopt.core.config import ConfigError
from policyopt.lm.code_rewards import (
    EfficiencyReward,
    SQLReward,
    UnitTestReward,
    build_code_reward,
    coding_tasks,
    extract_code,
    extract_sql,
    ngram_similarity,
    rows_match,
    schema_items,
    schema_linking,
    sql_tokens,
    tests_from_metadata,
)
from policyopt.lm.reward import RewardFn, RewardGuard
from policyopt.lm.sandbox import CallTest, IOTest, Limits, SandboxPool

from .conftest import FAST

ASSERTS = ("def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(3) == 9\n"
           "    assert candidate(-1) == 1\n    assert candidate(0) == 0\n")
COMPLETIONS = [
    "Here you go:\n```python\ndef square(x):\n    return x * x\n```\nDone.",  # correct
    "```python\ndef square(x):\n    return abs(x) * 2 if x != 3 else 9\n```",  # 3 of 4 ... (2, 3, 0 pass)
    "```python\ndef square(x) return x\n```",  # syntax error
    "```python\ndef square(x):\n    while True:\n        pass\n```",  # hangs
    "```python\nprint('ALL TESTS PASSED')\nimport sys\nsys.exit(0)\n```",  # exits before the tests
    "no code at all",
]


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2) as p:
        yield p


def test_unit_test_reward_partial_credit_and_verdicts(box, pool):
    reward = UnitTestReward(box, pool, limits=FAST)
    assert isinstance(reward, RewardFn)
    meta = [{"asserts": ASSERTS, "entry_point": "square"}] * len(COMPLETIONS)
    scores = reward(["prompt"] * len(COMPLETIONS), COMPLETIONS, meta)
    assert scores == [1.0, 0.75, 0.0, 0.0, 0.0, 0.0]
    verdicts = [[v.value for v in r.verdicts] for r in reward.last_reports]
    assert verdicts[1] == ["PASS", "PASS", "FAIL", "PASS"]
    assert verdicts[2] == ["COMPILE_ERROR"] * 4 and verdicts[3] == ["TIMEOUT"] * 4 and verdicts[4] == ["FAIL"] * 4
    assert reward.last_metrics["verdict/pass"] == pytest.approx(7 / 24)
    assert reward.last_metrics["reward/unscorable_frac"] == 0.0
    strict = UnitTestReward(box, pool, partial_credit=False)
    assert strict(["p"] * 2, COMPLETIONS[:2], meta[:2]) == [1.0, 0.0]
    assert reward(["p"], ["x"], [{}]) == [None]  # no tests: unscorable, not 0


def test_unit_test_reward_with_io_tests(box):
    tests = [{"stdin": "2 3\n", "expected_stdout": "5\n"}, IOTest("10 -4\n", "6\n")]
    good = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    bad = "```python\nprint(5)\n```"
    assert UnitTestReward(box)(["p", "p"], [good, bad], [{"tests": tests}] * 2) == [1.0, 0.5]


def test_efficiency_reward_scores_speedup_only_for_correct_code(box, pool):
    slow = "def total(n):\n    s = 0\n    for i in range(n):\n        s += i\n    return s\n"
    fast = "def total(n):\n    return n * (n - 1) // 2\n"
    wrong = "def total(n):\n    return 0\n"
    meta = {"tests": [CallTest("total(10)", 45), CallTest("total(1)", 0)], "reference": slow,
            "benchmark": ["total(3_000_000)"]}
    reward = EfficiencyReward(box, pool, repeats=3, bench_limits=Limits(wall_timeout_s=10, cpu_time_s=10))
    scores = reward(["p"] * 3, [slow, fast, wrong], [meta] * 3)
    assert scores[2] == 0.0
    assert 0.5 < scores[0] < 2.0  # the reference against itself: about 1
    assert scores[1] == reward.max_speedup  # the closed form is far more than 10x faster
    assert reward.last_speedups[1] > scores[0]


def test_efficiency_reward_with_a_broken_reference_is_unscorable(box):
    meta = {"tests": [CallTest("total(10)", 45)], "reference": "def total(n):\n    while True:\n        pass\n",
            "benchmark": ["total(10)"]}
    reward = EfficiencyReward(box, repeats=1, bench_limits=Limits(wall_timeout_s=1.0, cpu_time_s=0.5))
    fast, wrong = "def total(n):\n    return n * (n - 1) // 2\n", "def total(n):\n    return 0\n"
    assert reward(["p", "p"], [fast, wrong], [meta, meta]) == [None, 0.0]  # never a max reward for free


def test_efficiency_reward_counts_work_moved_to_import_time(box):
    slow = "def total(n):\n    s = 0\n    for i in range(n):\n        s += i\n    return s\n"
    cheat = ("_CACHE = {}\ns = 0\nfor i in range(3_000_000):\n    s += i\n_CACHE[3_000_000] = s\n"
             "def total(n):\n    return _CACHE.get(n, n * (n - 1) // 2)\n")
    meta = {"tests": [CallTest("total(10)", 45)], "reference": slow, "benchmark": ["total(3_000_000)"]}
    reward = EfficiencyReward(box, repeats=3, bench_limits=Limits(wall_timeout_s=10, cpu_time_s=10))
    (score,) = reward(["p"], [cheat], [meta])
    assert score < 2.0  # precomputing at import costs as much as the loop it replaces


DB = ("CREATE TABLE emp(id INTEGER PRIMARY KEY, name TEXT, dept TEXT, salary REAL);"
      "CREATE TABLE dept(code TEXT, title TEXT);"
      "INSERT INTO emp VALUES (1,'ann','x',10),(2,'bob','x',20),(3,'cat','y',30);"
      "INSERT INTO dept VALUES ('x','sales'),('y','ops');")
GOLD = "SELECT name FROM emp WHERE dept = 'x'"


def test_sql_reward_execution_match_and_partial_rewards(box, pool):
    preds = ["```sql\nSELECT e.name FROM emp AS e WHERE e.dept='x';\n```",  # same rows, different text
             "SELECT name FROM emp WHERE dept = 'y'",  # runs, wrong rows
             "SELEC name FROM emp",  # syntax error
             "SELECT name FROM employees",  # no such table
             "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"]  # hangs
    reward = SQLReward(box, pool, weights={"execution": 3.0, "syntax": 1.0, "schema": 1.0, "ngram": 1.0},
                       limits=Limits(wall_timeout_s=2.0))
    scores = reward(["q"] * len(preds), preds, [{"db": DB, "gold_sql": GOLD}] * len(preds))
    comps = reward.last_components
    assert comps[0]["execution"] == 1.0 and comps[0]["syntax"] == 1.0 and comps[0]["schema"] == 1.0
    assert comps[1]["execution"] == 0.0 and comps[1]["syntax"] == 1.0 and comps[1]["ngram"] == pytest.approx(6 / 8)
    assert comps[2]["syntax"] == 0.0 and comps[3]["syntax"] == 0.0 and comps[4]["execution"] == 0.0
    assert scores[0] > scores[1] > scores[3] >= 0.0
    metrics = reward.last_metrics
    assert metrics["verdict/pass"] == 0.2 and metrics["verdict/compile_error"] == 0.2
    assert metrics["verdict/runtime_error"] == 0.2 and metrics["verdict/timeout"] == 0.2
    bad_gold = reward(["q"], ["SELECT 1"], [{"db": DB, "gold_sql": "SELECT nope FROM nowhere"}])
    assert bad_gold == [None]  # a broken reference is unscorable, not 0
    with pytest.raises(ValueError, match="unknown components"):
        SQLReward(box, weights={"exec": 1.0})


def test_sql_reward_on_a_database_file(box, tmp_path):
    import sqlite3

    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(DB)
    reward = SQLReward(box, weights={"execution": 1.0, "syntax": 0.5})
    preds = ["SELECT name FROM emp WHERE dept = 'x' ORDER BY id", "DROP TABLE emp", "SELECT name FROM emp"]
    scores = reward(["q"] * 3, preds, [{"db_path": str(path), "gold_sql": GOLD}] * 3)
    assert scores == [1.5, 0.0, 0.5]  # the file is read-only inside: DROP fails; the host file is intact
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM emp").fetchone() == (3,)


def test_sql_helpers():
    assert sql_tokens('SELECT "Name" FROM t WHERE x = \'It\'\'s\';') == [
        "select", "name", "from", "t", "where", "x", "=", "'It''s'"]
    schema = {"emp": ["id", "name", "dept"], "dept": ["code"]}
    assert schema_items("SELECT e.name FROM emp e JOIN dept d ON e.dept = d.code", schema) == {
        "name", "emp", "dept", "code"}
    assert schema_linking("SELECT name FROM emp", "SELECT name FROM emp WHERE id = 1", schema) == pytest.approx(2 / 3)
    assert ngram_similarity("SELECT a FROM t", "SELECT a FROM t") == 1.0
    assert ngram_similarity("SELECT a FROM t", "") == 0.0
    assert rows_match([[1, "a"], [2, "b"]], [[2, "b"], [1, "a"]], ordered=False)
    assert not rows_match([[1, "a"], [2, "b"]], [[2, "b"], [1, "a"]], ordered=True)
    assert not rows_match([[1, "a"]], [[1, "a"], [1, "a"]], ordered=False)  # multiset, length-checked
    assert extract_sql("```sql\nSELECT 1;\n```") == "SELECT 1"


def test_extract_code_and_metadata():
    assert extract_code("a\n```python\nx = 1\n```\n```python\ny = 2\n```") == "y = 2\n"
    assert extract_code("```\nz = 3\n```") == "z = 3\n"
    assert extract_code("plain") == "plain"
    assert extract_code("<answer>a = 1</answer> junk <answer>b = 2</answer>") == "b = 2"
    assert tests_from_metadata({"tests": [{"expression": "f()", "expected": 1}]}) == [CallTest("f()", 1)]
    with pytest.raises(ValueError, match="mix"):
        tests_from_metadata({"tests": [CallTest("f()", 1), IOTest("", "")]})
    with pytest.raises(ValueError, match="unrecognised"):
        tests_from_metadata({"tests": [42]})


def test_reward_guard_masks_infrastructure_failures(box, monkeypatch):
    reward = UnitTestReward(box)
    meta = [{"tests": [CallTest("f()", 1)]}] * 2
    result = RewardGuard(reward)(["p", "p"], ["def f():\n    return 1\n", "def f():\n    return 2\n"], meta)
    assert result.values.tolist() == [1.0, 0.0] and result.scorable.tolist() == [True, True]
    monkeypatch.setattr(box.backend, "bwrap", "/bin/false")
    result = RewardGuard(reward)(["p", "p"], ["def f():\n    return 1\n", "def f():\n    return 2\n"], meta)
    assert result.scorable.tolist() == [False, False]  # masked out, not scored 0
    assert result.num_unscorable == 2


def test_build_code_reward_from_config():
    reward = build_code_reward({"kind": "sql", "workers": 1, "sql_weights": {"execution": 3.0, "ngram": 1.0},
                                "sandbox": {"limits": {"wall_timeout_s": 1.0}}})
    assert isinstance(reward, SQLReward) and reward.weights == {"execution": 3.0, "ngram": 1.0}
    assert reward.sandbox.config.limits.wall_timeout_s == 1.0
    reward.pool.close()
    with pytest.raises(ConfigError, match="reward.kind"):
        build_code_reward({"kind": "vibes"})
    with pytest.raises(ConfigError, match="reward.sandbox.trust"):
        build_code_reward({"sandbox": {"backend": "subprocess"}})


def test_generated_coding_tasks_score_their_reference_and_reject_wrong_code(box):
    train, held_out = coding_tasks(6, "train", seed=1), coding_tasks(3, "eval", seed=1)
    assert len({t.prompt for t in train}) == 6 and not {t.prompt for t in train} & {t.prompt for t in held_out}
    assert coding_tasks(6, "train", seed=1) == train  # seeded
    reward = UnitTestReward(box)
    completions = [f"<answer>{t.answer}</answer>" for t in train[:3]] + ["<answer>def f(x):return 0</answer>"]
    scores = reward([t.prompt for t in train[:4]], completions, [t.metadata for t in train[:4]])
    assert scores[:3] == [1.0, 1.0, 1.0] and scores[3] < 1.0
    with pytest.raises(ValueError):
        coding_tasks(1, "test")


def test_completions_sampled_from_the_built_in_model_are_scored_end_to_end(box):
    """prompts -> built-in LM samples (untrained weights: garbage code) -> sandbox -> guarded rewards."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from policyopt.lm.builtin import build_untrained
    from policyopt.lm.sampling import SamplingConfig, sample

    torch.set_num_threads(1)
    model, tokenizer = build_untrained(seed=0)
    tasks = coding_tasks(2, "train", seed=0)
    prompts = [tokenizer(t.prompt)["input_ids"] for t in tasks]
    samples = sample(model, prompts, SamplingConfig(max_new_tokens=24, samples_per_prompt=4),
                     generator=torch.Generator().manual_seed(0), pad_token_id=tokenizer.pad_token_id,
                     eos_token_ids=[tokenizer.eos_token_id])
    texts = tokenizer.batch_decode(samples.completion_lists(), skip_special_tokens=True)
    meta = [tasks[int(i)].metadata for i in samples.prompt_index]
    with SandboxPool(workers=2) as pool:
        reward = UnitTestReward(box, pool)
        result = RewardGuard(reward)([tasks[int(i)].prompt for i in samples.prompt_index], texts, meta)
    assert len(texts) == 8 and result.scorable.all()  # every completion was judged, none was lost
    assert result.values.tolist() == [0.0] * 8  # random weights do not write f(x)
    assert reward.last_metrics["verdict/pass"] == 0.0 and reward.last_metrics["verdict/sandbox_error"] == 0.0
