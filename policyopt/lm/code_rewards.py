"""Verifiable rewards that execute model-generated code in the sandbox (each a ``RewardFn``).

- :class:`UnitTestReward` — fraction of unit tests passed (partial credit) or all-or-nothing, with
  per-test verdicts. Tests come from ``metadata["tests"]`` (:class:`CallTest` / :class:`IOTest` or
  dicts) or ``metadata["asserts"]`` (HumanEval/MBPP-style assert source, split so the expected values
  stay in the parent).
- :class:`EfficiencyReward` — correctness plus efficiency: 0 unless every unit test passes, then the
  speed-up of the candidate over a reference solution, both timed by kernel CPU accounting over
  repeated sandboxed runs (ACECode, Yang et al. 2024; CUDA-L1, Li et al. 2025; speed-up rewards of
  the code-optimization literature, e.g. PIE, Shypula et al. 2024).
- :class:`SQLReward` — text-to-SQL: execution match against SQLite *inside the sandbox*, plus the
  partial rewards of Reasoning-SQL (Pourreza et al. 2025): syntax validity, schema-linking overlap
  (Jaccard of referenced tables/columns) and n-gram similarity (Jaccard of token bigrams).

Every reward returns ``None`` (unscorable) when the sandbox itself failed (``SANDBOX_ERROR``) or the
reference could not be run — never 0 — and keeps per-verdict fractions of its last batch in
``last_metrics`` for the trainer's log.
"""

from __future__ import annotations

import functools
import math
import os
import random
import re
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import pydantic

from policyopt.core.config import build, configclass
from policyopt.lm.sandbox import (
    CallTest,
    IOTest,
    Limits,
    Sandbox,
    SandboxConfig,
    SandboxPool,
    TestReport,
    Verdict,
    tests_from_asserts,
    verdict_fractions,
)
from policyopt.lm.sandbox.harness import CompareMode
from policyopt.lm.sandbox.sandbox import check_trust
from policyopt.lm.tasks import TaskExample, split_of

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_code(completion: str, language: str = "python") -> str:
    """The last fenced code block tagged ``language``, else the last fenced block, else the content of
    the last ``<answer>...</answer>``, else the whole text.

    ``extract_code("Sure:\\n```python\\nx = 1\\n```")`` -> ``"x = 1\\n"``.
    """
    blocks = _FENCE.findall(completion)
    tagged = [body for tag, body in blocks if tag.lower() == language.lower()]
    if tagged:
        return tagged[-1]
    if blocks:
        return blocks[-1][1]
    answers = _ANSWER.findall(completion)
    return answers[-1] if answers else completion


def tests_from_metadata(meta: Mapping[str, Any]) -> list[CallTest] | list[IOTest]:
    """Tests of one prompt: ``meta["tests"]`` (objects or dicts with ``expression``/``expected`` or
    ``stdin``/``expected_stdout``) or ``meta["asserts"]`` (+ optional ``entry_point``)."""
    if "asserts" in meta:
        return tests_from_asserts(meta["asserts"], meta.get("entry_point"))
    raw = meta.get("tests")
    if not raw:
        return []
    tests: list = []
    for item in raw:
        if isinstance(item, (CallTest, IOTest)):
            tests.append(item)
        elif isinstance(item, Mapping) and "expression" in item:
            tests.append(CallTest(item["expression"], item["expected"]))
        elif isinstance(item, Mapping) and "stdin" in item:
            tests.append(IOTest(item["stdin"], item["expected_stdout"]))
        else:
            raise ValueError(f"unrecognised test {item!r}: expected CallTest/IOTest or a dict with "
                             "'expression'+'expected' or 'stdin'+'expected_stdout'")
    if len({type(t) for t in tests}) > 1:
        raise ValueError("a prompt's tests must be all CallTest or all IOTest, not a mix")
    return tests


tests_from_metadata.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def run_tests(sandbox: Sandbox, source: str, tests: Sequence[CallTest] | Sequence[IOTest],
              compare: CompareMode = "lines", limits: Limits | None = None, float_tol: float = 0.0) -> TestReport:
    """Run one candidate against its tests (call tests share a process; I/O tests get one each)."""
    if tests and isinstance(tests[0], IOTest):
        return sandbox.run_io_tests(source, tests, compare=compare, limits=limits)
    return sandbox.run_call_tests(source, tests, limits=limits, float_tol=float_tol)


run_tests.__test__ = False  # type: ignore[attr-defined]


def _pool_map(pool: SandboxPool | None, fn, items: list) -> list:
    return pool.map(fn, items) if pool is not None else [fn(item) for item in items]


def _batch_metrics(reports: Sequence[TestReport | None], scores: Sequence[float | None]) -> dict[str, float]:
    verdicts = [v for r in reports if r is not None for v in r.verdicts]
    metrics = verdict_fractions(verdicts)
    metrics["reward/unscorable_frac"] = sum(s is None for s in scores) / max(len(scores), 1)
    metrics["sandbox/runs"] = float(sum(r.runs for r in reports if r is not None))
    metrics["sandbox/cpu_s"] = float(sum(r.cpu_s for r in reports if r is not None))
    return metrics


@dataclass
class UnitTestReward:
    """Pass fraction of the prompt's unit tests (``partial_credit``) or 1/0 for all passing.

    Scores ``None`` if the prompt has no tests or any test hit ``SANDBOX_ERROR``. Per-test reports of
    the last batch are in ``last_reports``; verdict fractions in ``last_metrics``.
    """

    sandbox: Sandbox
    pool: SandboxPool | None = None
    partial_credit: bool = True
    compare: CompareMode = "lines"
    float_tol: float = 0.0
    limits: Limits | None = None
    language: str = "python"
    last_reports: list[TestReport | None] = field(default_factory=list, init=False)
    last_metrics: dict[str, float] = field(default_factory=dict, init=False)

    def __call__(self, prompts: Sequence[str], completions: Sequence[str],
                 metadata: Sequence[Mapping[str, Any]]) -> list[float | None]:
        jobs = [(extract_code(c, self.language), tests_from_metadata(m)) for c, m in zip(completions, metadata)]
        reports = _pool_map(self.pool, self._grade, jobs)
        scores = [self._score(r) for r in reports]
        self.last_reports, self.last_metrics = reports, _batch_metrics(reports, scores)
        return scores

    def _grade(self, job: tuple[str, list]) -> TestReport | None:
        source, tests = job
        if not tests:
            return None
        return run_tests(self.sandbox, source, tests, self.compare, self.limits, self.float_tol)

    def _score(self, report: TestReport | None) -> float | None:
        if report is None or report.pass_fraction is None:
            return None
        return report.pass_fraction if self.partial_credit else float(report.all_passed)


_EMPTY = ("", (), 1)
"""Timing key of the empty program (interpreter start-up), subtracted from every timing."""


@dataclass
class EfficiencyReward:
    """Correctness plus efficiency: ``0`` unless every unit test passes, else
    ``min(speedup, max_speedup)`` with ``speedup = (T_ref - T_0) / max(T_cand - T_0, min_time_s)``.

    ``T`` is the median over ``repeats`` separate sandboxed runs of the kernel-measured CPU seconds
    of defining the solution and evaluating ``metadata["benchmark"]`` (call expressions)
    ``metadata.get("bench_repeat", bench_repeat)`` times; ``T_0`` is the same for an empty program
    (interpreter start-up). The reference is ``metadata["reference"]`` (its timing is cached). Timing
    comes from ``wait4`` in the parent, so a candidate cannot report a fake time, and work moved to
    import time is still counted.
    """

    sandbox: Sandbox
    pool: SandboxPool | None = None
    repeats: int = 3
    bench_repeat: int = 1
    max_speedup: float = 10.0
    min_time_s: float = 1e-3
    bench_limits: Limits | None = None
    last_metrics: dict[str, float] = field(default_factory=dict, init=False)
    last_speedups: list[float | None] = field(default_factory=list, init=False)
    _cache: dict[tuple, float | None] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.bench_repeat < 1:
            raise ValueError("EfficiencyReward.repeats and bench_repeat must be >= 1")
        self.correctness = UnitTestReward(self.sandbox, self.pool, partial_credit=False)

    def __call__(self, prompts: Sequence[str], completions: Sequence[str],
                 metadata: Sequence[Mapping[str, Any]]) -> list[float | None]:
        correct = self.correctness(prompts, completions, metadata)
        keys = [self._key(m) for m in metadata]
        missing = sorted({*keys, _EMPTY} - set(self._cache))  # references (and the empty program), once
        timed = dict(zip(missing, _pool_map(self.pool, lambda k: self._median_time(k[0], k), missing)))
        self._cache.update({k: t for k, t in timed.items() if t is not None})  # never cache a failure
        ref_times = {**timed, **self._cache}
        usable = {k for k, t in ref_times.items() if t is not None and math.isfinite(t)}
        base = ref_times[_EMPTY] if _EMPTY in usable else None
        todo = [i for i, ok in enumerate(correct) if ok == 1.0 and keys[i] in usable]
        cand = dict(zip(todo, _pool_map(self.pool, lambda i: self._median_time(
            extract_code(completions[i]), keys[i]), todo)))
        scored = [self._score(ok, ref_times[k] if k in usable else None, base, cand.get(i))
                  for i, (ok, k) in enumerate(zip(correct, keys))]
        scores = [s for s, _ in scored]
        self.last_speedups = [sp for _, sp in scored]
        self.last_metrics = {**self.correctness.last_metrics,
                             "efficiency/mean_speedup": statistics.fmean([s for s in self.last_speedups if s]
                                                                         or [0.0])}
        return scores

    def _score(self, correct: float | None, ref: float | None, base: float | None,
               cand: float | None) -> tuple[float | None, float | None]:
        """(reward, speed-up) of one completion. Unscorable when correctness or any needed timing is an
        infrastructure failure, or the reference itself fails its benchmark; 0 when incorrect."""
        if correct is None:
            return None, None
        if correct != 1.0:
            return 0.0, None
        if ref is None or base is None or cand is None:
            return None, None
        speedup = max(ref - base, self.min_time_s) / max(cand - base, self.min_time_s)
        return min(speedup, self.max_speedup), speedup

    def _key(self, meta: Mapping[str, Any]) -> tuple:
        if "reference" not in meta or "benchmark" not in meta:
            raise ValueError("EfficiencyReward needs metadata['reference'] (source) and metadata['benchmark'] "
                             "(list of call expressions)")
        return (meta["reference"], tuple(meta["benchmark"]), int(meta.get("bench_repeat", self.bench_repeat)))

    def _median_time(self, source: str, key: tuple) -> float | None:
        """Median CPU seconds over ``repeats`` runs; None on an infrastructure failure, ``inf`` if the
        program failed or timed out while being benchmarked."""
        times = []
        for _ in range(self.repeats):
            result, cpu_s = self.sandbox.cpu_seconds(source, list(key[1]), key[2], self.bench_limits)
            if result.verdict is Verdict.SANDBOX_ERROR:
                return None
            times.append(cpu_s if result.verdict is Verdict.PASS else float("inf"))
        return statistics.median(times)


_SQL_TOKEN = re.compile(r"`[^`]*`|\"[^\"]*\"|\[[^\]]*\]|'(?:[^']|'')*'|\d+(?:\.\d+)?|\w+|<=|>=|<>|!=|\|\||\S")
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)


def sql_tokens(query: str) -> list[str]:
    """Lower-cased SQL tokens (quoted identifiers unquoted; string literals kept whole)."""
    tokens = []
    for tok in _SQL_TOKEN.findall(query.strip().rstrip(";")):
        if tok[0] in "`\"[":
            tok = tok[1:-1]
        tokens.append(tok if tok.startswith("'") else tok.lower())
    return tokens


def jaccard(a: set, b: set) -> float:
    """``|a & b| / |a | b|``; 1.0 when both are empty."""
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def ngram_similarity(predicted: str, gold: str, n: int = 2) -> float:
    """Reasoning-SQL n-gram reward: Jaccard similarity of the token n-gram sets of two queries."""
    def grams(q: str) -> set[tuple[str, ...]]:
        t = sql_tokens(q)
        return {tuple(t[i:i + n]) for i in range(max(len(t) - n + 1, 0))} or ({tuple(t)} if t else set())
    return jaccard(grams(predicted), grams(gold))


def schema_items(query: str, schema: Mapping[str, Sequence[str]]) -> set[str]:
    """Tables and columns of ``schema`` that ``query`` mentions (``table`` and ``column`` names, lower case)."""
    names = {t.lower() for t in schema} | {c.lower() for cols in schema.values() for c in cols}
    found = set()
    for tok in sql_tokens(query):
        for part in tok.split("."):
            if part in names:
                found.add(part)
    return found


def schema_linking(predicted: str, gold: str, schema: Mapping[str, Sequence[str]]) -> float:
    """Reasoning-SQL schema-linking reward: Jaccard of the schema items used by the two queries."""
    return jaccard(schema_items(predicted, schema), schema_items(gold, schema))


def rows_match(predicted: list, gold: list, ordered: bool) -> bool:
    """Execution match: same rows (as tuples, same count); in order only when the gold query orders."""
    p, g = [tuple(r) for r in predicted], [tuple(r) for r in gold]
    return p == g if ordered else Counter(p) == Counter(g)


@functools.lru_cache(maxsize=32)
def _database_bytes(path: str, mtime_ns: int) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _read_database(path: str) -> bytes:
    """The bytes of an SQLite file (cached per path and modification time)."""
    return _database_bytes(path, os.stat(path).st_mtime_ns)


def extract_sql(completion: str) -> str:
    """The last fenced ``sql`` block, else the last fenced block, else the text (a trailing ';' dropped)."""
    return extract_code(completion, "sql").strip().rstrip(";").strip()


@dataclass
class SQLReward:
    """Text-to-SQL reward ``sum_k weights[k] * r_k`` over components ``execution`` (result match),
    ``syntax`` (the query ran without error), ``schema`` (schema-linking Jaccard) and ``ngram``
    (bigram Jaccard). Metadata: ``gold_sql`` and either ``db`` (SQL script that builds the database)
    or ``db_path`` (an SQLite file, e.g. from Spider/BIRD, opened read-only inside the sandbox).

    Both queries run inside the sandbox, each on a fresh in-memory copy of the database. Unscorable
    (None) if the sandbox failed or the gold query itself does not run. Default weights: execution
    only (set the others to add the partial rewards; Reasoning-SQL weighs execution highest).
    """

    sandbox: Sandbox
    pool: SandboxPool | None = None
    weights: Mapping[str, float] = field(default_factory=lambda: {"execution": 1.0})
    limits: Limits | None = None
    last_components: list[dict[str, float] | None] = field(default_factory=list, init=False)
    last_metrics: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        unknown = set(self.weights) - {"execution", "syntax", "schema", "ngram"}
        if unknown:
            raise ValueError(f"SQLReward.weights: unknown components {sorted(unknown)}; "
                             "expected execution, syntax, schema, ngram")

    def __call__(self, prompts: Sequence[str], completions: Sequence[str],
                 metadata: Sequence[Mapping[str, Any]]) -> list[float | None]:
        jobs = [(extract_sql(c), m) for c, m in zip(completions, metadata)]
        outcomes = _pool_map(self.pool, self._one, jobs)
        self.last_components = [o[0] for o in outcomes]
        scores = [None if c is None else sum(self.weights.get(k, 0.0) * v for k, v in c.items())
                  for c in self.last_components]
        self.last_metrics = verdict_fractions([o[1] for o in outcomes])
        self.last_metrics["reward/unscorable_frac"] = sum(s is None for s in scores) / max(len(scores), 1)
        return scores

    def _one(self, job: tuple[str, Mapping[str, Any]]) -> tuple[dict[str, float] | None, Verdict]:
        predicted, meta = job
        if ("db" not in meta and "db_path" not in meta) or "gold_sql" not in meta:
            raise ValueError("SQLReward needs metadata['gold_sql'] and metadata['db'] (setup SQL script) "
                             "or metadata['db_path'] (SQLite file)")
        gold = str(meta["gold_sql"])
        database = meta["db"] if "db" in meta else _read_database(str(meta["db_path"]))
        results, values, schema = self.sandbox.run_sql(database, [gold, predicted], limits=self.limits)
        gold_result, pred_result = results
        if gold_result.verdict is not Verdict.PASS or pred_result.verdict is Verdict.SANDBOX_ERROR:
            return None, Verdict.SANDBOX_ERROR
        ran = pred_result.verdict is Verdict.PASS
        match = ran and rows_match(values[1], values[0], ordered=bool(_ORDER_BY.search(gold)))
        components = {"execution": float(match), "syntax": float(ran),
                      "schema": schema_linking(predicted, gold, schema or {}),
                      "ngram": ngram_similarity(predicted, gold)}
        verdict = Verdict.PASS if match else (Verdict.FAIL if ran else pred_result.verdict)
        return components, verdict


@configclass
class CodeRewardConfig:
    """YAML-facing description of a code-execution reward (``build_code_reward`` makes the object)."""

    kind: Literal["unit_tests", "efficiency", "sql"] = "unit_tests"
    """Which reward: unit-test pass fraction, correctness plus speed-up, or text-to-SQL."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """Backend, trust level and limits of the sandbox the code runs in."""
    workers: Annotated[int, pydantic.Field(ge=0, le=1024)] = 0
    """Concurrent sandboxed executions; 0 = one per available core."""
    partial_credit: bool = True
    """unit_tests: score the pass fraction (else 1 only when every test passes)."""
    compare: Literal["exact", "lines", "tokens"] = "lines"
    """unit_tests with stdin/stdout tests: how program output is compared (all length-checked)."""
    float_tol: Annotated[float, pydantic.Field(ge=0)] = 0.0
    """unit_tests with call tests: relative/absolute tolerance for float results (0 = exact)."""
    repeats: Annotated[int, pydantic.Field(ge=1, le=100)] = 3
    """efficiency: timed runs per program (the median is used)."""
    max_speedup: Annotated[float, pydantic.Field(gt=0)] = 10.0
    """efficiency: the reward is min(speed-up, max_speedup)."""
    sql_weights: dict[str, float] = field(default_factory=lambda: {"execution": 1.0})
    """sql: weights of the components execution, syntax, schema, ngram."""


def build_code_reward(config: CodeRewardConfig | Mapping[str, Any] | None = None,
                      ) -> UnitTestReward | EfficiencyReward | SQLReward:
    """The reward described by ``config`` with its own sandbox and worker pool.

    Raises ``ConfigError`` naming a bad key, ``SandboxUnavailable`` if the backend cannot run here.
    """
    if not isinstance(config, CodeRewardConfig):
        config = build(CodeRewardConfig, config, "reward")
    check_trust(config.sandbox, "reward.sandbox")
    sandbox = Sandbox(config.sandbox)
    pool = SandboxPool(config.workers or None)
    if config.kind == "unit_tests":
        return UnitTestReward(sandbox, pool, partial_credit=config.partial_credit, compare=config.compare,
                              float_tol=config.float_tol)
    if config.kind == "efficiency":
        return EfficiencyReward(sandbox, pool, repeats=config.repeats, max_speedup=config.max_speedup)
    return SQLReward(sandbox, pool, weights=dict(config.sql_weights))


_TEMPLATES = ("{a}*x+{b}", "{a}*x-{b}", "x*x+{b}", "{a}*x*x", "(x+{b})*{a}", "x%{a}+{b}")


def coding_tasks(n: int, split: str = "train", seed: int = 0) -> list[TaskExample]:
    """A small generated coding task (for smoke tests and GRPO demos with the built-in model).

    Prompt ``code:f(x)=3*x+2``; reference answer ``def f(x):return 3*x+2``; metadata carries
    ``tests`` (four call tests on random inputs), ``entry_point``, ``reference`` and ``benchmark``
    so that :class:`UnitTestReward` and :class:`EfficiencyReward` can score completions. Prompts are
    assigned to ``train``/``eval`` by :func:`policyopt.lm.tasks.split_of`, like the other tasks.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[TaskExample] = []
    for _ in range(200 * n + 1000):
        if len(out) == n:
            return out
        expr = rng.choice(_TEMPLATES).format(a=rng.randint(2, 9), b=rng.randint(1, 9))
        prompt = f"code:f(x)={expr}"
        if prompt in seen or split_of(prompt) != split:
            continue
        seen.add(prompt)
        answer = f"def f(x):return {expr}"
        inputs = rng.sample(range(-20, 21), 4)
        tests = [{"expression": f"f({x})", "expected": eval(expr, {"x": x})} for x in inputs]
        out.append(TaskExample(prompt, answer, {"task": "code", "answer": answer, "tests": tests,
                                                "entry_point": "f", "reference": answer,
                                                "benchmark": ["[f(x) for x in range(2000)]"]}))
    raise ValueError(f"only {len(out)} distinct {split} coding prompts exist; asked for {n}")
