"""Job-shop baselines: priority dispatching rules (batched), the CP-SAT optimum, a reference simulator.

Dispatching rules (Haupt, "A survey of priority rule-based scheduling", OR Spektrum 1989; the
rules compared in L2D, Zhang et al. NeurIPS 2020), each choosing among unfinished jobs, ties to the
lowest job index:

- ``SPT``: shortest processing time of the next operation,
- ``MWKR``: most work remaining,
- ``MOPNR``: most operations remaining,
- ``FIFO``: the job whose next operation became ready first (smallest job-ready time).

Each rule also has a ``+GT`` variant that first restricts the candidates as Giffler & Thompson's active
schedule generation does ("Algorithms for solving production-scheduling problems", Oper. Res. 1960):
take the operation with the earliest possible completion ``C*`` on machine ``m*`` and keep only the jobs
whose next operation is on ``m*`` and can start before ``C*``. The plain rules pick among all
unfinished jobs (append placement), which is weaker.

``solve_cpsat`` is the standard disjunctive CP model (interval variables, one no-overlap per machine,
job precedences, minimise the makespan) solved with OR-Tools CP-SAT; ``makespan_of_sequence`` is an
independent, loop-based simulator of a dispatch sequence used to test the environment.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from policyopt.envs.jobshop import JobShopVectorEnv
from policyopt.envs.jobshop_instances import JobShopInstance

BASE_RULES = ("SPT", "MWKR", "MOPNR", "FIFO")
RULES = BASE_RULES + tuple(f"{r}+GT" for r in BASE_RULES)


def giffler_thompson_candidates(env: JobShopVectorEnv) -> np.ndarray:
    """``[num_envs, n_jobs]`` bool: jobs allowed by Giffler-Thompson active-schedule generation."""
    finished, machine, duration = env._next_op_view()
    est = env.earliest_starts(machine)
    ect = np.where(finished, np.iinfo(np.int64).max, est + duration)
    star = ect.argmin(axis=1)
    rows = np.arange(env.num_envs)
    m_star, c_star = machine[rows, star], ect[rows, star]
    return ~finished & (machine == m_star[:, None]) & (est < c_star[:, None])


def rule_actions(env: JobShopVectorEnv, rule: str) -> np.ndarray:
    """``[num_envs]`` job chosen by dispatching ``rule`` in every copy of ``env`` (no Python loop)."""
    finished, _, duration = env._next_op_view()
    if rule.endswith("+GT"):
        allowed = giffler_thompson_candidates(env)
        rule = rule[: -len("+GT")]
    else:
        allowed = ~finished
    if rule == "SPT":
        score = duration.astype(np.float64)
    elif rule == "MWKR":
        score = -env.remaining_work.astype(np.float64)
    elif rule == "MOPNR":
        score = -(env.n_machines - env.next_op).astype(np.float64)
    elif rule == "FIFO":
        score = env.job_ready.astype(np.float64)
    else:
        raise ValueError(f"unknown dispatching rule {rule!r}; choose one of {RULES}")
    return np.where(allowed, score, np.inf).argmin(axis=1)


def run_rule(env: JobShopVectorEnv, rule: str, seed: int) -> np.ndarray:
    """Play one episode in every copy with ``rule``; returns the makespans ``[num_envs]``."""
    env.reset(seed=seed)
    rows = np.arange(env.num_envs)
    for _ in range(env.n_jobs * env.n_machines):
        env._step_rows(rows, rule_actions(env, rule))
    return env.makespan().copy()


def instances_of(env: JobShopVectorEnv) -> list[JobShopInstance]:
    """The instances currently loaded in the copies of ``env`` (after a reset)."""
    return [JobShopInstance(f"copy{i}", env.machines[i].copy(), env.durations[i].copy())
            for i in range(env.num_envs)]


def makespan_of_sequence(instance: JobShopInstance, jobs: list[int]) -> int:
    """Makespan of appending operations in the order ``jobs`` (job ids, each ``n_machines`` times).

    Written independently of the environment (plain loops and dicts) to cross-check it.
    """
    next_op = [0] * instance.n_jobs
    job_free: dict[int, int] = {}
    machine_free: dict[int, int] = {}
    for job in jobs:
        k = next_op[job]
        if k >= instance.n_machines:
            raise ValueError(f"job {job} has no operation left")
        machine = int(instance.machines[job][k])
        start = max(job_free.get(job, 0), machine_free.get(machine, 0))
        job_free[job] = machine_free[machine] = start + int(instance.durations[job][k])
        next_op[job] = k + 1
    if any(k != instance.n_machines for k in next_op):
        raise ValueError("the sequence does not dispatch every operation")
    return max(job_free.values())


def solve_cpsat(instance: JobShopInstance, time_limit_s: float = 10.0, workers: int = 1) -> dict[str, Any]:
    """Minimise the makespan with OR-Tools CP-SAT.

    Returns ``{"makespan", "bound", "optimal", "starts"}`` where ``starts`` is int64
    ``[n_jobs, n_machines]`` (start of operation ``k`` of job ``j``) and ``bound`` the proven lower bound.
    """
    from ortools.sat.python import cp_model

    model = cp_model.CpModel()
    horizon = int(instance.durations.sum())
    starts, ends, per_machine = {}, {}, {m: [] for m in range(instance.n_machines)}
    for j in range(instance.n_jobs):
        for k in range(instance.n_machines):
            d = int(instance.durations[j, k])
            starts[j, k] = model.new_int_var(0, horizon, f"s{j}_{k}")
            ends[j, k] = model.new_int_var(0, horizon, f"e{j}_{k}")
            interval = model.new_interval_var(starts[j, k], d, ends[j, k], f"i{j}_{k}")
            per_machine[int(instance.machines[j, k])].append(interval)
            if k > 0:
                model.add(starts[j, k] >= ends[j, k - 1])
    for intervals in per_machine.values():
        model.add_no_overlap(intervals)
    makespan = model.new_int_var(0, horizon, "makespan")
    model.add_max_equality(makespan, [ends[j, instance.n_machines - 1] for j in range(instance.n_jobs)])
    model.minimize(makespan)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit_s)
    solver.parameters.num_workers = int(workers)
    solver.parameters.random_seed = 0
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise RuntimeError(f"CP-SAT found no schedule for {instance.name} in {time_limit_s}s")
    start_arr = np.array([[solver.value(starts[j, k]) for k in range(instance.n_machines)]
                          for j in range(instance.n_jobs)], dtype=np.int64)
    return {"makespan": int(solver.objective_value), "bound": int(solver.best_objective_bound),
            "optimal": status == cp_model.OPTIMAL, "starts": start_arr}


def dispatch_order_of(starts: np.ndarray) -> list[int]:
    """Job sequence that makes the environment reproduce a schedule: operations sorted by start time."""
    n_jobs, n_ops = starts.shape
    order = np.lexsort((np.tile(np.arange(n_ops), n_jobs), starts.reshape(-1)))
    return [int(i // n_ops) for i in order]
