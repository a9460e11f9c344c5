"""The core install (`pip install policyopt`, no extras) must run classic RL: nothing on the
classic path may import the optional language-model stack."""

import subprocess
import sys

CODE = """
import sys
import policyopt.cli, policyopt.algos, policyopt.runtime.run, policyopt.envs
from policyopt.algos import REGISTRY
assert {'ppo', 'a2c', 'reinforce'} <= set(REGISTRY)
heavy = sorted(m for m in ('transformers', 'peft', 'datasets', 'tokenizers', 'optuna', 'ray', 'matplotlib')
               if m in sys.modules)
print(heavy)
"""


def test_classic_path_imports_no_optional_stack():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
