"""Job-shop scheduling as dispatching: at each step pick the job whose next operation is scheduled.

Serves "End-to-End RL for the Job-Shop Scheduling Problem based on Constraint Programming" (Tassel,
Gebser & Schekotihin, ICAPS 2023) and "Dispatching rules for the blocking job shop with GNN and RL"
style work; the dense lower-bound reward is the one of L2D (Zhang et al., "Learning to Dispatch for
Job Shop Scheduling via Deep RL", NeurIPS 2020).

- **Instances**: a fixed one (``instance="ft06"``, ``"la01"``, a file path in OR-Library or Taillard
  format, or a :class:`JobShopInstance`), a list of such instances of one size (each episode draws
  one uniformly from the copy's stream), or a fresh Taillard-style random ``n_jobs x n_machines``
  instance (durations uniform in ``[1, max_duration]``) drawn at every reset from the copy's stream.
- **Action**: ``Discrete(n_jobs)``: the job whose next operation is appended to its machine; it starts
  at ``max(job ready, machine ready)`` (semi-active schedules, which contain an optimal one). A
  finished job is masked: ``info["action_mask"]`` (bool ``[n_jobs]``); a masked or out-of-range action
  raises :class:`~policyopt.envs.core.InvalidActionError`.
- **Observation** (float32, ``n_jobs * (6 + n_machines) + n_machines + 1``): per job ``[finished,
  progress, remaining work, next duration, earliest start of next op - min earliest start, its
  completion - current bound, one-hot next machine]``, per machine ``machine ready - min earliest
  start``, and the fraction of operations dispatched. Times are divided by ``max_duration * n_machines``.
- **Reward**: ``(LB_t - LB_{t+1}) / reward_scale`` with ``LB = max_j (job_ready_j + remaining_work_j)``,
  a lower bound of the makespan that equals it at the end: the return is ``(LB_0 - makespan) /
  reward_scale``. ``reward_scale`` defaults to ``max_duration``.
- **Termination**: when every operation is dispatched (``n_jobs * n_machines`` steps); no truncation.
  ``info["makespan"]`` is the current schedule length (the final makespan at termination).
- **Breakdowns** (``breakdown_prob > 0``): after every dispatch each machine independently breaks
  with that probability and its availability is pushed back by a repair time uniform in
  ``[1, max_repair]`` (interruptions between operations; an operation, once started, is not preempted).
- **Baselines** (:mod:`policyopt.envs.jobshop_baselines`): SPT, MWKR, MOPNR and FIFO dispatching rules,
  and the OR-Tools CP-SAT optimum (or best bound) with the optimality gap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from policyopt.envs.core import NativeVectorEnv, SingleEnv, check_positive_int, check_range
from policyopt.envs.jobshop_instances import JobShopInstance, load_instance, random_instances


class JobShopVectorEnv(NativeVectorEnv):
    """``num_envs`` job shops dispatched in lock step (see the module docstring)."""

    state_fields = ("machines", "durations", "next_op", "job_ready", "machine_ready", "remaining_work",
                    "start_times", "bound", "dispatched")

    def __init__(self, num_envs: int = 1, n_jobs: int = 6, n_machines: int = 6, max_duration: int = 99,
                 instance: str | Path | JobShopInstance | list | None = None, breakdown_prob: float = 0.0,
                 max_repair: int = 10, reward_scale: float | None = None,
                 autoreset_mode: str = "next_step") -> None:
        super().__init__(num_envs, autoreset_mode)
        pool = [] if instance is None else list(instance) if isinstance(instance, (list, tuple)) else [instance]
        pool = [p if isinstance(p, JobShopInstance) else load_instance(p) for p in pool]
        if pool and len({(p.n_jobs, p.n_machines) for p in pool}) > 1:
            raise ValueError(f"instance: all instances of a pool must have one size, got "
                             f"{sorted({(p.name, p.n_jobs, p.n_machines) for p in pool})}")
        self.pool = pool
        self.instance = pool[0] if len(pool) == 1 else None
        if pool:
            n_jobs, n_machines = pool[0].n_jobs, pool[0].n_machines
            max_duration = max(int(p.durations.max()) for p in pool)
            self._pool_machines = np.stack([p.machines for p in pool])
            self._pool_durations = np.stack([p.durations for p in pool])
        self.n_jobs = check_positive_int("n_jobs", n_jobs)
        self.n_machines = check_positive_int("n_machines", n_machines)
        self.max_duration = check_positive_int("max_duration", max_duration)
        self.breakdown_prob = check_range("breakdown_prob", breakdown_prob, 0.0, 1.0)
        self.max_repair = check_positive_int("max_repair", max_repair)
        self.reward_scale = check_range("reward_scale", reward_scale or self.max_duration, 1e-9, np.inf)
        self.time_scale = float(self.max_duration * self.n_machines)
        n, j, m = self.num_envs, self.n_jobs, self.n_machines
        self.machines = np.zeros((n, j, m), dtype=np.int64)
        self.durations = np.zeros((n, j, m), dtype=np.int64)
        self.start_times = np.full((n, j, m), -1, dtype=np.int64)
        self.next_op = np.zeros((n, j), dtype=np.int64)
        self.job_ready = np.zeros((n, j), dtype=np.int64)
        self.remaining_work = np.zeros((n, j), dtype=np.int64)
        self.machine_ready = np.zeros((n, m), dtype=np.int64)
        self.bound = np.zeros(n, dtype=np.int64)
        self.dispatched = np.zeros(n, dtype=np.int64)
        self._row_index = np.arange(n)[:, None]
        self._op_base = (np.arange(n)[:, None] * j + np.arange(j)[None, :]) * m  # flat index of op 0
        obs_dim = j * (6 + m) + m + 1
        self._set_spaces(spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32), spaces.Discrete(j))

    # ------------------------------------------------------------------ dynamics
    def _reset_rows(self, rows: np.ndarray, options: dict[str, Any] | None) -> None:
        if len(self.pool) == 1:
            self.machines[rows] = self._pool_machines[0]
            self.durations[rows] = self._pool_durations[0]
        elif self.pool:
            pick = np.floor(self._uniform(rows, 1)[:, 0] * len(self.pool)).astype(np.int64)
            self.machines[rows] = self._pool_machines[pick]
            self.durations[rows] = self._pool_durations[pick]
        else:
            u = self._uniform(rows, 2 * self.n_jobs * self.n_machines)
            self.machines[rows], self.durations[rows] = random_instances(
                u, self.n_jobs, self.n_machines, self.max_duration)
        self.next_op[rows] = 0
        self.job_ready[rows] = 0
        self.machine_ready[rows] = 0
        self.start_times[rows] = -1
        self.remaining_work[rows] = self.durations[rows].sum(axis=2)
        self.bound[rows] = self.remaining_work[rows].max(axis=1)
        self.dispatched[rows] = 0

    def _step_rows(self, rows: np.ndarray, actions: np.ndarray):
        job = actions
        op = self.next_op[rows, job]
        machine = self.machines[rows, job, op]
        duration = self.durations[rows, job, op]
        start = np.maximum(self.job_ready[rows, job], self.machine_ready[rows, machine])
        end = start + duration
        self.start_times[rows, job, op] = start
        self.job_ready[rows, job] = end
        self.machine_ready[rows, machine] = end
        self.next_op[rows, job] = op + 1
        self.remaining_work[rows, job] -= duration
        self.dispatched[rows] += 1
        if self.breakdown_prob > 0.0:
            u = self._uniform(rows, 2 * self.n_machines)
            broken = u[:, : self.n_machines] < self.breakdown_prob
            repair = 1 + np.floor(u[:, self.n_machines:] * self.max_repair).astype(np.int64)
            self.machine_ready[rows] += broken * repair
        new_bound = (self.job_ready[rows] + self.remaining_work[rows]).max(axis=1)
        reward = (self.bound[rows] - new_bound) / self.reward_scale
        self.bound[rows] = new_bound
        terminated = self.dispatched[rows] == self.n_jobs * self.n_machines
        return reward, terminated, np.zeros(len(rows), dtype=bool)

    # ------------------------------------------------------------------ views
    def _next_op_view(self):
        """``(finished [N,J], next machine [N,J], next duration [N,J])`` (duration 0 when finished)."""
        finished = self.next_op >= self.n_machines
        flat = self._op_base + np.minimum(self.next_op, self.n_machines - 1)
        machine = self.machines.reshape(-1)[flat]
        duration = self.durations.reshape(-1)[flat]
        duration[finished] = 0
        return finished, machine, duration

    def _action_mask(self) -> np.ndarray:
        finished = self.next_op >= self.n_machines
        done = finished.all(axis=1, keepdims=True)
        return ~finished | done

    def earliest_starts(self, machine: np.ndarray | None = None) -> np.ndarray:
        """``[N, n_jobs]`` earliest start time of each job's next operation."""
        if machine is None:
            machine = self._next_op_view()[1]
        return np.maximum(self.job_ready, self.machine_ready[self._row_index, machine])

    def _observe(self) -> np.ndarray:
        n, j, m = self.num_envs, self.n_jobs, self.n_machines
        finished, machine, duration = self._next_op_view()
        live = ~finished
        est = self.earliest_starts(machine)
        t0 = np.where(finished, np.iinfo(np.int64).max, est).min(axis=1, keepdims=True)
        all_done = finished.all(axis=1, keepdims=True)
        if all_done.any():
            t0 = np.where(all_done, self.job_ready.max(axis=1, keepdims=True), t0)
        inv = 1.0 / self.time_scale
        out = np.empty((n, j * (6 + m) + m + 1), dtype=np.float32)
        per_job = out[:, : j * (6 + m)].reshape(n, j, 6 + m)
        per_job[..., 0] = finished
        per_job[..., 1] = self.next_op * (1.0 / m)
        per_job[..., 2] = self.remaining_work * inv
        per_job[..., 3] = duration * (1.0 / self.max_duration)
        per_job[..., 4] = (est - t0) * inv * live
        per_job[..., 5] = (est + duration - self.bound[:, None]) * inv * live
        per_job[..., 6:] = 0.0
        out[self._row_index, np.arange(j) * (6 + m) + 6 + machine] = live  # one-hot of the next machine
        out[:, j * (6 + m): -1] = (self.machine_ready - t0) * inv
        out[:, -1] = self.dispatched * (1.0 / (j * m))
        return out

    def _infos(self) -> dict[str, np.ndarray]:
        return {"action_mask": self._action_mask(), "makespan": self.job_ready.max(axis=1)}

    def makespan(self) -> np.ndarray:
        """``[N]`` current schedule length (the final makespan once every operation is dispatched)."""
        return self.job_ready.max(axis=1)


def make_single(**kwargs: Any) -> SingleEnv:
    """The single-env form (entry point of ``gymnasium.make("policyopt/JobShop-v0")``)."""
    return SingleEnv(JobShopVectorEnv, **kwargs)
