"""Prompt datasets and generated task families with ground truth.

A :class:`TaskExample` is one prompt with its reference ``answer`` (a string, without tags) and
per-example ``metadata`` (always ``metadata["task"]`` and ``metadata["answer"]``; task-specific
fields such as ``numbers``/``target`` for countdown). The SFT completion is
``<answer>{answer}</answer>``.

Generated families (seeded, ``generate(task, n, split, seed, **params)``):

=============  ========================  ==========================  ===========================
task           prompt                    answer                      correct when
=============  ========================  ==========================  ===========================
addition       ``37+485=``               ``522``                     numeric match
multiplication ``12*34=``                ``408``                     numeric match
sorting        ``sort:53,9,71=``         ``9,53,71``                 exact match
equation       ``3x+5=20;x=``            ``5``                       numeric match
countdown      ``make 24 from 3,5,7,2=`` ``(7-5+2)*3`` (one of many) expression uses each number
                                                                     once and equals the target
=============  ========================  ==========================  ===========================

Held-out splits are disjoint *by construction*: every prompt is assigned to ``train`` or ``eval`` by
a stable hash of its text (:func:`split_of`), and a generator for one split rejects prompts of the
other. So no eval prompt can ever appear in a training set, whatever the seeds or sizes. The same
rule splits JSONL / ``datasets.Dataset`` prompt sets (:meth:`PromptDataset.split`).
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from policyopt.lm.tokenizer import ANSWER_CLOSE, ANSWER_OPEN

SPLITS = ("train", "eval")
EVAL_PERCENT = 10
"""Percent of the prompt space (by hash) reserved for evaluation."""


@dataclass(frozen=True)
class TaskExample:
    """One prompt with its ground truth. ``metadata`` holds ``task``, ``answer`` and task fields."""

    prompt: str
    answer: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def completion(self) -> str:
        """The supervised completion: the answer inside ``<answer>`` tags."""
        return f"{ANSWER_OPEN}{self.answer}{ANSWER_CLOSE}"


def split_of(prompt: str, eval_percent: int = EVAL_PERCENT) -> str:
    """``"eval"`` for ``eval_percent``% of all prompts (by a stable blake2b hash), else ``"train"``."""
    digest = hashlib.blake2b(prompt.encode("utf-8"), digest_size=8).digest()
    return "eval" if int.from_bytes(digest, "little") % 100 < eval_percent else "train"


# ----------------------------------------------------------------------------- task families


def _digits(rng: random.Random, max_digits: int, min_digits: int = 1) -> int:
    n = rng.randint(min_digits, max_digits)
    return rng.randint(0 if n == 1 else 10 ** (n - 1), 10**n - 1)


def _addition(rng: random.Random, max_digits: int = 3) -> TaskExample:
    a, b = _digits(rng, max_digits), _digits(rng, max_digits)
    return _example("addition", f"{a}+{b}=", str(a + b), a=a, b=b)


def _multiplication(rng: random.Random, max_digits: int = 2, max_digits_b: int = 2) -> TaskExample:
    a, b = _digits(rng, max_digits), _digits(rng, max_digits_b)
    return _example("multiplication", f"{a}*{b}=", str(a * b), a=a, b=b)


def _sorting(rng: random.Random, min_len: int = 3, max_len: int = 5, max_value: int = 99) -> TaskExample:
    values = [rng.randint(0, max_value) for _ in range(rng.randint(min_len, max_len))]
    prompt = "sort:" + ",".join(map(str, values)) + "="
    return _example("sorting", prompt, ",".join(map(str, sorted(values))), values=values)


def _equation(rng: random.Random, max_coef: int = 9, max_x: int = 20, max_b: int = 30) -> TaskExample:
    a, x, b = rng.randint(1, max_coef), rng.randint(-max_x, max_x), rng.randint(-max_b, max_b)
    lhs = ("" if a == 1 else str(a)) + "x" + ("" if b == 0 else f"{b:+d}")
    return _example("equation", f"{lhs}={a * x + b};x=", str(x), a=a, b=b, c=a * x + b)


def _countdown(rng: random.Random, count: int = 3, max_number: int = 9, max_target: int = 100) -> TaskExample:
    """Combine ``count`` numbers with + - * into a random expression tree; its value is the target."""
    while True:
        numbers = [rng.randint(1, max_number) for _ in range(count)]
        exprs = [(str(v), v, True) for v in numbers]  # (text, value, is_atom)
        while len(exprs) > 1:
            i, j = rng.sample(range(len(exprs)), 2)
            (ta, va, aa), (tb, vb, ab) = exprs[i], exprs[j]
            op = rng.choice("+-*")
            ta = ta if aa or op in "+-" else f"({ta})"
            tb = tb if ab or op == "+" else f"({tb})"
            value = va + vb if op == "+" else va - vb if op == "-" else va * vb
            exprs = [e for k, e in enumerate(exprs) if k not in (i, j)] + [(f"{ta}{op}{tb}", value, False)]
        text, target, _ = exprs[0]
        if 0 < target <= max_target:
            break
    prompt = f"make {target} from {','.join(map(str, numbers))}="
    return _example("countdown", prompt, text, numbers=numbers, target=target)


def _game24(rng: random.Random, max_number: int = 13) -> TaskExample:
    """The 24 game: four numbers in 1..max_number that can make 24 with + - * / (found by search)."""
    while True:
        numbers = [rng.randint(1, max_number) for _ in range(4)]
        solution = solve_countdown(numbers, 24)
        if solution is not None:
            return _example("countdown", f"make 24 from {','.join(map(str, numbers))}=", solution,
                            numbers=numbers, target=24)


def _example(task: str, prompt: str, answer: str, **fields: Any) -> TaskExample:
    return TaskExample(prompt, answer, {"task": task, "answer": answer, **fields})


# ----------------------------------------------------------------------------- verification


def parse_number(text: str) -> Fraction | None:
    """``"-12"``, ``"3.50"``, ``"1,234"``, ``"7/2"`` -> exact Fraction; anything else -> None."""
    text = text.strip().replace(",", "").replace(" ", "")
    if not text:
        return None
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


def evaluate_expression(text: str) -> tuple[Fraction, list[int]] | None:
    """Exact value and the integer literals of an arithmetic expression (+ - * / and parentheses).

    Returns None for anything else (names, calls, powers, division by zero, syntax errors). Parsed
    with ``ast``; nothing is executed.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError):
        return None
    literals: list[int] = []
    ops = {ast.Add: lambda x, y: x + y, ast.Sub: lambda x, y: x - y,
           ast.Mult: lambda x, y: x * y, ast.Div: lambda x, y: x / y}

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            literals.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError("unsupported syntax")

    try:
        return walk(tree.body), literals
    except (ValueError, ZeroDivisionError, RecursionError):
        return None


def check_countdown(answer: str, numbers: Sequence[int], target: int) -> bool:
    """True iff ``answer`` uses each of ``numbers`` exactly once (as a multiset) and equals ``target``."""
    if len(answer) > 200:
        return False
    result = evaluate_expression(answer)
    return result is not None and result[0] == target and Counter(result[1]) == Counter(numbers)


def solve_countdown(numbers: Sequence[int], target: int) -> str | None:
    """One expression reaching ``target`` with all ``numbers`` and + - * / (exhaustive search), or None.

    Sums and differences are written in parentheses, and the right operand of ``*``/``/`` is
    parenthesised unless it is a number or a parenthesised sum, so the text evaluates to the value
    found. Commutative operations are tried in one order only and value multisets already shown to
    fail are remembered.
    """
    failed: set[tuple[Fraction, ...]] = set()

    def search(items: list[tuple[Fraction, str, bool]]) -> str | None:  # (value, text, safe as operand)
        if len(items) == 1:
            return items[0][1] if items[0][0] == target else None
        key = tuple(sorted(v for v, _, _ in items))
        if key in failed:
            return None
        for i, j in itertools.permutations(range(len(items)), 2):
            (va, ta, _), (vb, tb, safe_b) = items[i], items[j]
            rest = [it for k, it in enumerate(items) if k not in (i, j)]
            right = tb if safe_b else f"({tb})"
            candidates = [(va - vb, f"({ta}-{tb})", True)]
            if i < j:
                candidates += [(va + vb, f"({ta}+{tb})", True), (va * vb, f"{ta}*{right}", False)]
            if vb != 0:
                candidates.append((va / vb, f"{ta}/{right}", False))
            for cand in candidates:
                found = search(rest + [cand])
                if found is not None:
                    return found
        failed.add(key)
        return None

    found = search([(Fraction(v), str(v), True) for v in numbers])
    if found is not None and found.startswith("(") and found.endswith(")"):
        inner = evaluate_expression(found[1:-1])
        if inner is not None and inner[0] == target:
            found = found[1:-1]
    return found


def check_answer(answer: str, metadata: Mapping[str, Any]) -> bool:
    """Is the extracted ``answer`` text correct for the example described by ``metadata``?

    countdown: :func:`check_countdown`; addition/multiplication/equation: numeric equality;
    anything else (sorting, JSONL tasks): exact match after stripping whitespace.
    """
    task = metadata.get("task")
    if task == "countdown":
        return check_countdown(answer, metadata["numbers"], int(metadata["target"]))
    reference = str(metadata["answer"])
    if task in ("addition", "multiplication", "equation"):
        got, want = parse_number(answer), parse_number(reference)
        return got is not None and got == want
    return answer.strip() == reference.strip()


# ----------------------------------------------------------------------------- generation

TASKS: dict[str, Callable[..., TaskExample]] = {
    "addition": _addition,
    "multiplication": _multiplication,
    "sorting": _sorting,
    "equation": _equation,
    "countdown": _countdown,
    "game24": _game24,
}


def generate(task: str, n: int, split: str = "train", seed: int = 0, unique: bool = True,
             **params: Any) -> list[TaskExample]:
    """``n`` examples of a task family whose prompts all belong to ``split`` (see :func:`split_of`).

    Seeded: the same (task, n, split, seed, params) gives the same list. ``unique`` drops repeated
    prompts; it raises if the prompt space is too small to supply ``n`` distinct ones.
    ``params`` are the family's difficulty knobs (e.g. ``max_digits=3`` for addition).
    """
    if task not in TASKS:
        raise KeyError(f"unknown task {task!r}; known: {sorted(TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(f"{task}|{split}|{seed}|{sorted(params.items())}")
    make = TASKS[task]
    out: list[TaskExample] = []
    seen: set[str] = set()
    tries, max_tries = 0, 50 * n + 1000
    while len(out) < n:
        tries += 1
        if tries > max_tries:
            raise ValueError(f"task {task!r} {params}: could only find {len(out)} distinct {split} "
                             f"prompts of {n}; lower n, pass unique=False or widen the task")
        ex = make(rng, **params)
        if split_of(ex.prompt) != split or (unique and ex.prompt in seen):
            continue
        seen.add(ex.prompt)
        out.append(ex)
    return out


def generate_mixture(counts: Mapping[str, int], split: str = "train", seed: int = 0,
                     params: Mapping[str, Mapping[str, Any]] | None = None,
                     unique: bool = True) -> list[TaskExample]:
    """Examples of several families, ``counts = {task: n}``, concatenated then shuffled (seeded)."""
    params = params or {}
    out = [ex for task, n in counts.items() for ex in generate(task, n, split, seed, unique,
                                                                **params.get(task, {}))]
    random.Random(f"mixture|{split}|{seed}").shuffle(out)
    return out


# ----------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class PromptDataset:
    """An immutable sequence of :class:`TaskExample` with column views (``prompts``, ``answers``...)."""

    examples: tuple[TaskExample, ...]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> TaskExample:
        return self.examples[index]

    def __iter__(self) -> Iterator[TaskExample]:
        return iter(self.examples)

    @property
    def prompts(self) -> list[str]:
        return [ex.prompt for ex in self.examples]

    @property
    def answers(self) -> list[str]:
        return [ex.answer for ex in self.examples]

    @property
    def metadata(self) -> list[Mapping[str, Any]]:
        return [ex.metadata for ex in self.examples]

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], prompt_key: str = "prompt",
                     answer_key: str = "answer", task: str | None = None) -> PromptDataset:
        """Build from mappings; every other key goes to metadata. ``task`` sets ``metadata["task"]``."""
        out = []
        for i, rec in enumerate(records):
            if prompt_key not in rec:
                raise KeyError(f"record {i} has no {prompt_key!r} key (keys: {sorted(rec)})")
            prompt = rec[prompt_key]
            if not isinstance(prompt, str):
                raise TypeError(f"record {i}: {prompt_key!r} must be a string, got {type(prompt).__name__}")
            answer = "" if rec.get(answer_key) is None else str(rec[answer_key])
            meta = {k: v for k, v in rec.items() if k not in (prompt_key, answer_key)}
            meta.setdefault("task", task or "prompt")
            meta["answer"] = answer
            out.append(TaskExample(prompt, answer, meta))
        return cls(tuple(out))

    @classmethod
    def from_jsonl(cls, path: str | Path, prompt_key: str = "prompt", answer_key: str = "answer",
                   task: str | None = None) -> PromptDataset:
        """One JSON object per line (blank lines skipped); errors name the file and line."""
        records = []
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{lineno}: not valid JSON: {err}") from None
                if not isinstance(rec, dict):
                    raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
                records.append(rec)
        return cls.from_records(records, prompt_key, answer_key, task)

    @classmethod
    def from_hf(cls, dataset: Any, prompt_key: str = "prompt", answer_key: str = "answer",
                task: str | None = None) -> PromptDataset:
        """From a ``datasets.Dataset`` (or any iterable of row mappings)."""
        return cls.from_records(iter(dataset), prompt_key, answer_key, task)

    @classmethod
    def generated(cls, counts: Mapping[str, int], split: str = "train", seed: int = 0,
                  params: Mapping[str, Mapping[str, Any]] | None = None) -> PromptDataset:
        return cls(tuple(generate_mixture(counts, split, seed, params)))

    def split(self, name: str, eval_percent: int = EVAL_PERCENT) -> PromptDataset:
        """The examples whose prompt hashes into split ``name`` (disjoint from the other split)."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return PromptDataset(tuple(ex for ex in self.examples if split_of(ex.prompt, eval_percent) == name))

    def to_jsonl(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            for ex in self.examples:
                rec = {**{k: v for k, v in ex.metadata.items() if k != "answer"},
                       "prompt": ex.prompt, "answer": ex.answer}
                fh.write(json.dumps(rec) + "\n")
