"""Size budget: no function over 60 lines, no file over 600 lines (mccabe is checked by ruff).

Usage: python tools/size_budget.py DIR [DIR ...]; exits 1 and names every offender.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 600


def offenders(path: Path) -> list[str]:
    text = path.read_text()
    found = []
    n_lines = text.count("\n") + 1
    if n_lines > MAX_FILE_LINES:
        found.append(f"{path}: {n_lines} lines > {MAX_FILE_LINES}")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{path}:{node.lineno}: function {node.name} has {length} lines > {MAX_FUNCTION_LINES}")
    return found


def main(argv: list[str]) -> int:
    found = []
    for root in argv or ["policyopt"]:
        for path in sorted(Path(root).rglob("*.py")):
            found += offenders(path)
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
