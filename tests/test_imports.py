"""The layers hold: imports only go down (parsed with ``ast``, lazy imports inside functions included),
there are no import cycles, the classic path loads no language-model module, and the flat public API
names real, documented classes.

The direction (``shared/design.md``)::

    core <- losses, nets <- data <- envs, lm <- algos <- runtime <- eval <- app <- cli, policyopt/__init__
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "policyopt"

ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "losses": {"core"},
    "nets": {"core", "losses"},
    "data": {"core", "losses", "nets"},
    "envs": {"core", "data", "nets"},
    "lm": {"core", "losses", "nets", "data"},
    "algos": {"core", "losses", "nets", "data", "lm"},
    "runtime": {"core", "losses", "nets", "data", "lm", "envs"},
    "eval": {"core", "losses", "nets", "data", "lm", "envs", "runtime"},
    "app": {"core", "losses", "nets", "data", "lm", "envs", "algos", "runtime", "eval"},
}
"""Layer -> the layers it may import (its own is always allowed). ``cli.py`` and ``__init__.py`` are on top."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every ``policyopt`` module this file imports, anywhere in it (module level or inside functions)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; write the absolute module")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("policyopt"):
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("policyopt")]
    return out


def files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_import_goes_down_the_layers():
    layers = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert layers == set(ALLOWED), f"a package without a layer rule: {layers ^ set(ALLOWED)}"
    upward = []
    for path in files():
        rel = path.relative_to(PACKAGE).parts
        if len(rel) == 1:
            continue   # cli.py, __init__.py: the top
        layer = rel[0]
        for line, target in imports_of(path):
            parts = target.split(".")
            other = parts[1] if len(parts) > 1 else "__init__"
            if other != layer and other not in ALLOWED[layer]:
                upward.append(f"{'/'.join(rel)}:{line} ({layer}) imports {target}")
    assert upward == [], "imports that go up or sideways:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = {module_name(p): {t for _, t in imports_of(p)} for p in files()}
    known = set(graph)
    graph = {m: {t if t in known else t.rsplit(".", 1)[0] for t in ts} & known - {m} for m, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if t == "policyopt":
                continue
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


CLASSIC = """
import sys
import policyopt.cli, policyopt.app.run, policyopt.app.build_classic, policyopt.envs
import policyopt.algos.ppo, policyopt.algos.dqn, policyopt.algos.sac, policyopt.algos.sarsa, policyopt.algos.pdppo
from policyopt.app.registry import REGISTRY
assert {'ppo', 'a2c', 'reinforce', 'dqn', 'sac', 'grpo', 'dpo'} <= set(REGISTRY)
heavy = sorted(m for m in ('transformers', 'peft', 'datasets', 'tokenizers', 'optuna', 'ray', 'matplotlib')
               if m in sys.modules)
lm = sorted(m for m in sys.modules if m.startswith(('policyopt.lm', 'policyopt.runtime.text', 'policyopt.runtime.lm'))
            or m in ('policyopt.algos.grpo', 'policyopt.algos.dpo', 'policyopt.algos.sft', 'policyopt.app.build_lm'))
print(heavy, lm)
"""


def test_classic_path_imports_no_lm_module_and_no_optional_stack():
    out = subprocess.run([sys.executable, "-c", CLASSIC], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] []", out.stdout


PPO_ONLY = """
import sys
import policyopt.algos.ppo
print(sorted(m for m in sys.modules if m.startswith('policyopt.')))
"""


def test_importing_ppo_loads_only_its_own_layers():
    out = subprocess.run([sys.executable, "-c", PPO_ONLY], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = eval(out.stdout)   # a printed list of module names
    layers = {m.split(".")[1] for m in loaded}
    assert layers <= {"algos", "core", "losses", "nets", "data"}, loaded
    assert len(loaded) <= 25, loaded


def test_flat_public_api_names_documented_classes():
    import policyopt
    from policyopt import (  # noqa: F401  (the names the README promises)
        A2C,
        DPO,
        DQN,
        GRPO,
        PPO,
        RLOO,
        SAC,
        SFT,
        ReMax,
        RewardModel,
        Trainer,
        make_env,
        train,
    )

    for name in policyopt.__all__:
        obj = getattr(policyopt, name)
        assert (inspect.getdoc(obj) or "").strip(), f"policyopt.{name} has no docstring"
    assert issubclass(RLOO, GRPO) and issubclass(ReMax, GRPO) and RLOO is not GRPO
