"""Job-shop instances: the standard file formats, the shipped benchmarks and a random generator.

Formats (both are whitespace separated integers, ``#`` starts a comment line):

- **OR-Library** (Beasley, "OR-Library", J. Oper. Res. Soc. 1990): a header ``n_jobs n_machines``, then
  one line per job with ``n_machines`` pairs ``machine duration`` in processing order, machines 0-based.
- **Taillard** (Taillard, "Benchmarks for basic scheduling problems", EJOR 1993): a header line whose
  first two numbers are ``n_jobs n_machines`` (more numbers such as seeds and bounds may follow), a
  ``Times`` block (``n_jobs x n_machines`` durations) and a ``Machines`` block (1-based machines).

Shipped: ``ft06`` (optimum 55) and ``la01`` (optimum 666) in ``policyopt/envs/data``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).parent / "data"
KNOWN_OPTIMA = {"ft06": 55, "la01": 666}


@dataclass(frozen=True)
class JobShopInstance:
    """One instance: ``machines[j, k]`` runs operation ``k`` of job ``j`` for ``durations[j, k]``.

    Both arrays are int64 ``[n_jobs, n_machines]``; every job visits every machine exactly once.
    """

    name: str
    machines: np.ndarray
    durations: np.ndarray
    optimum: int | None = None

    def __post_init__(self) -> None:
        m, d = np.asarray(self.machines), np.asarray(self.durations)
        if m.ndim != 2 or m.shape != d.shape:
            raise ValueError(f"{self.name}: machines {m.shape} and durations {d.shape} must be equal 2-D shapes")
        n_machines = m.shape[1]
        if not np.array_equal(np.sort(m, axis=1), np.broadcast_to(np.arange(n_machines), m.shape)):
            raise ValueError(f"{self.name}: every job must visit each machine 0..{n_machines - 1} exactly once")
        if (d < 0).any():
            raise ValueError(f"{self.name}: durations must be >= 0")

    @property
    def n_jobs(self) -> int:
        return int(self.machines.shape[0])

    @property
    def n_machines(self) -> int:
        return int(self.machines.shape[1])


def _numbers(lines: list[str]) -> list[int]:
    return [int(tok) for line in lines for tok in line.split()]


def parse_orlib(text: str, name: str = "instance") -> JobShopInstance:
    """Parse the OR-Library format (see the module docstring)."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"{name}: empty instance text")
    header = lines[0].split()
    n_jobs, n_machines = int(header[0]), int(header[1])
    body = _numbers(lines[1:])
    if len(body) != 2 * n_jobs * n_machines:
        raise ValueError(f"{name}: expected {2 * n_jobs * n_machines} numbers after the header, got {len(body)}")
    pairs = np.asarray(body, dtype=np.int64).reshape(n_jobs, n_machines, 2)
    return JobShopInstance(name, pairs[..., 0].copy(), pairs[..., 1].copy(), KNOWN_OPTIMA.get(name))


def parse_taillard(text: str, name: str = "instance") -> JobShopInstance:
    """Parse Taillard's format (``Times`` and ``Machines`` blocks, 1-based machines)."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    keys = [i for i, ln in enumerate(lines) if re.match(r"^\s*(times|machines)\b", ln, re.IGNORECASE)]
    if len(keys) != 2:
        raise ValueError(f"{name}: Taillard format needs one 'Times' and one 'Machines' line")
    header = [ln for ln in lines[: keys[0]] if re.match(r"^[\s\d]+$", ln)]
    if not header:
        raise ValueError(f"{name}: no 'n_jobs n_machines' header before 'Times'")
    n_jobs, n_machines = (int(x) for x in header[-1].split()[:2])
    times = _numbers(lines[keys[0] + 1: keys[1]])
    machines = _numbers(lines[keys[1] + 1:])
    size = n_jobs * n_machines
    if len(times) != size or len(machines) != size:
        raise ValueError(f"{name}: expected {size} times and machines, got {len(times)} and {len(machines)}")
    m = np.asarray(machines, dtype=np.int64).reshape(n_jobs, n_machines) - 1
    d = np.asarray(times, dtype=np.int64).reshape(n_jobs, n_machines)
    return JobShopInstance(name, m, d, KNOWN_OPTIMA.get(name))


def parse_instance(text: str, name: str = "instance") -> JobShopInstance:
    """Parse either format, detected by the presence of a ``Times`` block."""
    if re.search(r"^\s*times\b", text, re.IGNORECASE | re.MULTILINE):
        return parse_taillard(text, name)
    return parse_orlib(text, name)


def load_instance(name_or_path: str | Path) -> JobShopInstance:
    """A shipped benchmark by name (``"ft06"``, ``"la01"``) or an instance file in either format."""
    key = str(name_or_path)
    shipped = DATA_DIR / f"{key}.txt"
    path = shipped if shipped.exists() else Path(key)
    if not path.exists():
        names = sorted(p.stem for p in DATA_DIR.glob("*.txt"))
        raise FileNotFoundError(f"no job-shop instance {key!r}: not a file and not one of the shipped {names}")
    return parse_instance(path.read_text(), path.stem)


def random_instances(uniforms: np.ndarray, n_jobs: int, n_machines: int, max_duration: int):
    """Taillard-style random instances from uniforms ``[n, 2 * n_jobs * n_machines]``.

    Durations are uniform integers in ``[1, max_duration]`` and each job's machine order is a
    uniform random permutation (argsort of uniforms). Returns ``(machines, durations)``, both
    int64 ``[n, n_jobs, n_machines]``.
    """
    n, size = uniforms.shape[0], n_jobs * n_machines
    durations = 1 + np.floor(uniforms[:, :size] * max_duration).astype(np.int64)
    order_keys = uniforms[:, size: 2 * size].reshape(n, n_jobs, n_machines)
    machines = np.argsort(order_keys, axis=-1, kind="stable").astype(np.int64)
    return machines, durations.reshape(n, n_jobs, n_machines)
