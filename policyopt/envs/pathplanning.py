"""Continuous 2-D vehicle path planning among circular obstacles with a sparse goal reward.

Serves "Random-network-distillation-based deep RL for AGV path planning" style work (exploration
bonuses such as RND, Burda et al., ICLR 2019, matter here because the only reward is at the goal).

- **World**: the unit square; ``n_obstacles`` discs with centres uniform in ``[0.25, 0.75]^2`` and radii
  uniform in ``[0.05, 0.12]``; the start is uniform in ``[0.02, 0.12]^2`` and the goal in
  ``[0.88, 0.98]^2`` (never inside an obstacle by construction). Drawn per episode from the copy's stream.
- **Action**: ``Box(-1, 1, (2,))`` velocity command; the vehicle moves ``max_step * a`` (the command is
  rescaled to norm 1 if longer). Out-of-bound values are clipped.
- **Reward**: ``+1`` on reaching the goal (distance ``<= goal_radius``), ``collision_penalty`` (default
  0: purely sparse) on hitting an obstacle or the border, ``0`` otherwise; plus, only if
  ``distance_shaping > 0``, ``distance_shaping * (d_before - d_after)`` with ``d`` the distance to the
  goal (potential-based shaping, Ng, Harada & Russell, ICML 1999; off by default). Collisions are checked at the
  end point of each move; ``max_step < `` the smallest radius, so no obstacle can be jumped over.
- **Observation** (float32, ``5 + 3 * n_obstacles``): position, goal minus position, ``t / horizon``,
  and per obstacle its centre minus position and its radius.
- **Termination**: goal reached or collision (``terminated``); ``truncated`` after ``horizon`` steps.
  ``info["success"]`` is 1 on the step that reaches the goal.
- **Baselines** (:func:`baseline_actions`): ``straight`` line to the goal, ``potential_field``
  (attraction to the goal plus repulsion from nearby obstacles; Khatib, IJRR 1986; gets stuck in local
  minima) and ``border`` (along the always-free map edges: always succeeds, on a longer path).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from policyopt.envs.core import NativeVectorEnv, SingleEnv, check_positive_int, check_range


class PathPlanningVectorEnv(NativeVectorEnv):
    """``num_envs`` vehicles, each in its own obstacle field (see the module docstring)."""

    state_fields = ("position", "goal", "centres", "radii", "period", "success")

    def __init__(self, num_envs: int = 1, n_obstacles: int = 6, horizon: int = 200, max_step: float = 0.02,
                 goal_radius: float = 0.05, collision_penalty: float = 0.0, distance_shaping: float = 0.0,
                 autoreset_mode: str = "next_step") -> None:
        super().__init__(num_envs, autoreset_mode)
        self.n_obstacles = check_positive_int("n_obstacles", n_obstacles, 0)
        self.horizon = check_positive_int("horizon", horizon)
        self.max_step = check_range("max_step", max_step, 1e-6, 0.049)
        self.goal_radius = check_range("goal_radius", goal_radius, 1e-6, 0.5)
        self.collision_penalty = float(collision_penalty)
        self.distance_shaping = check_range("distance_shaping", distance_shaping, 0.0, np.inf)
        n, k = self.num_envs, self.n_obstacles
        self.position = np.zeros((n, 2))
        self.goal = np.zeros((n, 2))
        self.centres = np.zeros((n, k, 2))
        self.radii = np.zeros((n, k))
        self.period = np.zeros(n, dtype=np.int64)
        self.success = np.zeros(n, dtype=np.int64)
        obs = spaces.Box(-2.0, 2.0, (5 + 3 * k,), np.float32)
        self._set_spaces(obs, spaces.Box(-1.0, 1.0, (2,), np.float32))

    def _reset_rows(self, rows: np.ndarray, options: dict[str, Any] | None) -> None:
        k = self.n_obstacles
        u = self._uniform(rows, 4 + 3 * k)
        self.position[rows] = 0.02 + 0.10 * u[:, 0:2]
        self.goal[rows] = 0.88 + 0.10 * u[:, 2:4]
        self.centres[rows] = (0.25 + 0.5 * u[:, 4: 4 + 2 * k]).reshape(len(rows), k, 2)
        self.radii[rows] = 0.05 + 0.07 * u[:, 4 + 2 * k:]
        self.period[rows] = 0
        self.success[rows] = 0

    def collides(self, position: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``[len(rows)]`` bool: ``position [len(rows), 2]`` is outside the square or inside an obstacle."""
        outside = ((position < 0.0) | (position > 1.0)).any(axis=1)
        dist = np.linalg.norm(self.centres[rows] - position[:, None, :], axis=2)
        return outside | (dist < self.radii[rows]).any(axis=1)

    def _step_rows(self, rows: np.ndarray, actions: np.ndarray):
        a = actions.astype(np.float64)
        norm = np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1.0)
        new_pos = self.position[rows] + self.max_step * a / norm
        crashed = self.collides(new_pos, rows)
        old_pos = self.position[rows]
        reached = ~crashed & (np.linalg.norm(new_pos - self.goal[rows], axis=1) <= self.goal_radius)
        self.position[rows] = np.where(crashed[:, None], self.position[rows], new_pos)
        self.period[rows] += 1
        self.success[rows] = reached
        reward = np.where(reached, 1.0, np.where(crashed, self.collision_penalty, 0.0))
        if self.distance_shaping > 0.0:  # potential-based shaping with potential -distance (Ng et al. 1999)
            before = np.linalg.norm(self.goal[rows] - old_pos, axis=1)
            after = np.linalg.norm(self.goal[rows] - self.position[rows], axis=1)
            reward = reward + self.distance_shaping * (before - after)
        return reward, reached | crashed, ~(reached | crashed) & (self.period[rows] >= self.horizon)

    def _observe(self) -> np.ndarray:
        n = self.num_envs
        rel = (self.centres - self.position[:, None, :]).reshape(n, -1)
        parts = [self.position, self.goal - self.position, (self.period / self.horizon)[:, None], rel, self.radii]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _infos(self) -> dict[str, np.ndarray]:
        return {"success": self.success.copy()}


def baseline_actions(env: PathPlanningVectorEnv, name: str, repulsion: float = 0.002,
                     influence: float = 0.05) -> np.ndarray:
    """``[num_envs, 2]`` actions of the ``straight``, ``potential_field`` or ``border`` controller.

    ``border`` exploits the map's structure (the bands ``x < 0.13`` and ``y > 0.87`` are always free):
    up along the left edge to the goal's height, then right: it always succeeds, on a longer path.
    """
    to_goal = env.goal - env.position
    attract = to_goal / np.maximum(np.linalg.norm(to_goal, axis=1, keepdims=True), 1e-9)
    if name == "straight":
        return attract
    if name == "border":
        below = env.position[:, 1] < env.goal[:, 1] - 1e-9
        up = np.stack([np.zeros(env.num_envs), np.minimum((env.goal[:, 1] - env.position[:, 1]) / env.max_step, 1.0)],
                      axis=1)
        return np.where(below[:, None], up, attract)
    if name != "potential_field":
        raise ValueError(f"unknown baseline {name!r}; choose straight, potential_field or border")
    away = env.position[:, None, :] - env.centres  # [n, k, 2]
    centre_dist = np.linalg.norm(away, axis=2)
    gap = np.maximum(centre_dist - env.radii, 1e-6)
    strength = np.where(gap < influence, repulsion * (1.0 / gap - 1.0 / influence) / gap**2, 0.0)
    push = (strength[..., None] * away / np.maximum(centre_dist, 1e-9)[..., None]).sum(axis=1)
    tangent = np.stack([-push[:, 1], push[:, 0]], axis=1)  # slide around obstacles instead of stalling
    side = np.sign((tangent * attract).sum(axis=1, keepdims=True) + 1e-12)
    force = attract + push + 0.5 * side * tangent
    return force / np.maximum(np.linalg.norm(force, axis=1, keepdims=True), 1e-9)


def make_single(**kwargs: Any) -> SingleEnv:
    """The single-env form (entry point of ``gymnasium.make("policyopt/PathPlanning-v0")``)."""
    return SingleEnv(PathPlanningVectorEnv, **kwargs)
