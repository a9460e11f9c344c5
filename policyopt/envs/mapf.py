"""Lifelong multi-agent path finding on a grid, with PettingZoo's parallel API.

Serves "Learn to Follow: Decentralized Lifelong Multi-agent Pathfinding via Planning and Learning"
(Skrynnik et al., AAAI 2024) and the POGEMA setting it uses: partial observation around each agent,
a new goal as soon as the current one is reached, throughput as the metric.

- **World**: a ``size x size`` grid with obstacles (density ``obstacle_density``; only the largest
  4-connected free region is kept so every goal is reachable). ``n_agents`` agents start on distinct
  free cells, each with a goal on a free cell.
- **Actions** (per agent): ``Discrete(5)``: stay, up, down, left, right. A move into a wall or off the
  grid is a stay (documented handling). Conflicts are resolved for all agents at once: two agents
  entering the same cell, an agent entering a cell whose occupant stays, and two agents swapping
  cells all stay (repeated to a fixed point). Agents move along chains (follow the leader) freely.
- **Observation** (per agent, float32 ``3 * (2r + 1)^2 + 2`` with ``r = view_radius``): the local window
  of obstacles (outside the grid counts as obstacle), other agents and the own goal, then the goal's
  offset ``(goal - position) / size``. With ``path_hint=True`` five more entries mark the moves that
  shorten the BFS distance to the goal (the planned path a Learn-to-Follow follower receives).
- **Reward**: ``+1`` to an agent when it reaches its goal (it then gets a new one).
- **Termination**: none; every agent is truncated after ``horizon`` steps. ``infos[agent]`` has
  ``goals_reached`` (cumulative); :attr:`LifelongMAPFEnv.throughput` is goals reached per step.
- **Baseline**: :func:`shortest_path_actions`: each agent moves to the neighbouring cell closest to its
  goal (exact BFS distances), avoiding cells occupied now, waits when no such move helps, and with
  probability ``epsilon`` takes a random free move to break deadlocks.

:class:`MAPFAgentsVectorEnv` exposes one world as a Gymnasium vector env whose "copies" are the
agents (parameter sharing), so the same PPO trainer can learn a decentralised policy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from pettingzoo import ParallelEnv
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path

from policyopt.envs.core import InvalidActionError, check_positive_int, check_range

MOVES = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int64)


def resolve_moves(position: np.ndarray, proposed: np.ndarray, size: int) -> np.ndarray:
    """New positions ``[n, 2]`` after vertex, stay-into and swap conflicts (all conflicting agents stay)."""
    n = len(position)
    stay = np.all(proposed == position, axis=1)
    here = position[:, 0] * size + position[:, 1]
    owner = np.full(size * size, -1, dtype=np.int64)
    owner[here] = np.arange(n)
    for _ in range(n + 1):
        target = np.where(stay[:, None], position, proposed)
        cell = target[:, 0] * size + target[:, 1]
        crowded = np.bincount(cell, minlength=size * size)[cell] > 1
        occupant = owner[cell]
        other = (occupant >= 0) & (occupant != np.arange(n))
        occ = np.where(other, occupant, 0)
        swap = other & ~stay & (target[occ, 0] * size + target[occ, 1] == here) & ~stay[occ]
        new_stay = stay | (~stay & (crowded | swap))
        if np.array_equal(new_stay, stay):
            break
        stay = new_stay
    return np.where(stay[:, None], position, proposed)


class LifelongMAPFEnv(ParallelEnv):
    """Lifelong MAPF as a PettingZoo ``ParallelEnv`` (see the module docstring)."""

    metadata = {"name": "policyopt_lifelong_mapf_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(self, n_agents: int = 8, size: int = 12, obstacle_density: float = 0.2, view_radius: int = 2,
                 horizon: int = 128, path_hint: bool = False, render_mode: str | None = None) -> None:
        self.n_agents = check_positive_int("n_agents", n_agents)
        self.size = check_positive_int("size", size, 3)
        self.density = check_range("obstacle_density", obstacle_density, 0.0, 0.6)
        self.view_radius = check_positive_int("view_radius", view_radius, 1)
        self.horizon = check_positive_int("horizon", horizon)
        self.path_hint = bool(path_hint)
        self.render_mode = render_mode
        self.possible_agents = [f"agent_{i}" for i in range(self.n_agents)]
        self.agents: list[str] = []
        width = 2 * self.view_radius + 1
        hint = 5 if self.path_hint else 0
        self._obs_space = spaces.Box(-1.0, 1.0, (3 * width * width + 2 + hint,), np.float32)
        self._act_space = spaces.Discrete(5)
        self._rng = np.random.default_rng()
        self.goals_reached = np.zeros(self.n_agents, dtype=np.int64)
        self.period = 0

    def observation_space(self, agent: str) -> spaces.Box:
        return self._obs_space

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._act_space

    @property
    def throughput(self) -> float:
        """Goals reached by all agents per time step so far."""
        return float(self.goals_reached.sum()) / max(self.period, 1)

    # ------------------------------------------------------------------ world
    def _make_map(self) -> None:
        for _ in range(100):
            free = self._rng.random((self.size, self.size)) >= self.density
            labels, count = ndimage.label(free)
            if count == 0:
                continue
            biggest = 1 + int(np.argmax(np.bincount(labels.reshape(-1))[1:]))
            free = labels == biggest
            if free.sum() >= 2 * self.n_agents:
                break
        else:
            raise ValueError(f"cannot place {self.n_agents} agents at obstacle_density={self.density}")
        self.free = free
        self.free_cells = np.argwhere(free)
        idx = np.arange(self.size * self.size).reshape(self.size, self.size)
        src = np.concatenate([idx[:, :-1][free[:, :-1] & free[:, 1:]], idx[:-1, :][free[:-1, :] & free[1:, :]]])
        dst = np.concatenate([idx[:, 1:][free[:, :-1] & free[:, 1:]], idx[1:, :][free[:-1, :] & free[1:, :]]])
        graph = csr_matrix((np.ones(len(src)), (src, dst)), shape=(idx.size, idx.size))
        self.distance = shortest_path(graph, directed=False, unweighted=True)  # [cells, cells], inf if blocked

    def _new_goals(self, agents: np.ndarray) -> None:
        for i in agents:  # few agents per step; each needs a goal different from its position
            while True:
                cell = self.free_cells[self._rng.integers(len(self.free_cells))]
                if not np.array_equal(cell, self.position[i]):
                    self.goal[i] = cell
                    break

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._make_map()
        pick = self._rng.choice(len(self.free_cells), self.n_agents, replace=False)
        self.position = self.free_cells[pick].copy()
        self.goal = np.zeros_like(self.position)
        self._new_goals(np.arange(self.n_agents))
        self.goals_reached[:] = 0
        self.period = 0
        self.agents = list(self.possible_agents)
        return self._observations(), {a: {"goals_reached": 0} for a in self.agents}

    def step(self, actions: dict[str, int]):
        if not self.agents:
            raise RuntimeError("the episode is over: call reset()")
        missing = set(self.agents) - set(actions)
        if missing:
            raise InvalidActionError(f"no action for agents {sorted(missing)}")
        a = np.asarray([actions[name] for name in self.possible_agents])
        if a.shape != (self.n_agents,) or not np.issubdtype(a.dtype, np.integer) or ((a < 0) | (a > 4)).any():
            raise InvalidActionError(f"actions must be integers in [0, 5), got {a.tolist()}")
        proposed = self.position + MOVES[a]
        inside = ((proposed >= 0) & (proposed < self.size)).all(axis=1)
        clipped = np.clip(proposed, 0, self.size - 1)
        ok = inside & self.free[clipped[:, 0], clipped[:, 1]]
        proposed = np.where(ok[:, None], proposed, self.position)
        self.position = resolve_moves(self.position, proposed, self.size)
        reached = np.all(self.position == self.goal, axis=1)
        self.goals_reached += reached
        self._new_goals(np.flatnonzero(reached))
        self.period += 1
        truncated = self.period >= self.horizon
        obs = self._observations()
        rewards = {name: float(reached[i]) for i, name in enumerate(self.possible_agents)}
        terms = {name: False for name in self.possible_agents}
        truncs = {name: truncated for name in self.possible_agents}
        infos = {name: {"goals_reached": int(self.goals_reached[i])} for i, name in enumerate(self.possible_agents)}
        if truncated:
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def observation_array(self) -> np.ndarray:
        """``[n_agents, obs_dim]`` float32 observations of all agents (vectorised windows)."""
        r, n = self.view_radius, self.n_agents
        width = 2 * r + 1
        walls = np.pad(~self.free, r, constant_values=True).astype(np.float32)
        agents = np.zeros_like(walls)
        agents[self.position[:, 0] + r, self.position[:, 1] + r] = 1.0
        goals = np.zeros((n, *walls.shape), dtype=np.float32)
        goals[np.arange(n), self.goal[:, 0] + r, self.goal[:, 1] + r] = 1.0
        rows = self.position[:, 0, None] + np.arange(width)[None, :]  # padded coordinates of the window
        cols = self.position[:, 1, None] + np.arange(width)[None, :]
        win_walls = walls[rows[:, :, None], cols[:, None, :]]
        win_agents = agents[rows[:, :, None], cols[:, None, :]]
        win_agents[:, r, r] = 0.0  # not yourself
        win_goal = goals[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
        offset = (self.goal - self.position) / self.size
        flat = [win_walls.reshape(n, -1), win_agents.reshape(n, -1), win_goal.reshape(n, -1), offset]
        if self.path_hint:
            flat.append(self.shortest_path_moves())
        return np.concatenate(flat, axis=1).astype(np.float32)

    def shortest_path_moves(self) -> np.ndarray:
        """``[n_agents, 5]`` float: 1 for each move that shortens the agent's BFS distance to its goal.

        The planned-path input of a Learn-to-Follow style follower (ignores the other agents).
        """
        cand = self.position[:, None, :] + MOVES[None, 1:, :]
        inside = ((cand >= 0) & (cand < self.size)).all(axis=2)
        cc = np.clip(cand, 0, self.size - 1)
        goal = self.goal[:, 0] * self.size + self.goal[:, 1]
        here = self.distance[self.position[:, 0] * self.size + self.position[:, 1], goal]
        there = self.distance[cc[..., 0] * self.size + cc[..., 1], goal[:, None]]
        closer = inside & self.free[cc[..., 0], cc[..., 1]] & (there < here[:, None])
        return np.concatenate([np.zeros((self.n_agents, 1)), closer], axis=1)

    def _observations(self) -> dict[str, np.ndarray]:
        obs = self.observation_array()
        return {name: obs[i] for i, name in enumerate(self.possible_agents)}

    def state_dict(self) -> dict[str, Any]:
        """Exact world state as a state tree (numpy arrays, JSON scalars and the RNG's bit-generator state)."""
        fields = ("free", "free_cells", "distance", "position", "goal", "goals_reached")
        tree = {name: np.array(getattr(self, name), copy=True) for name in fields if hasattr(self, name)}
        return {"arrays": tree, "period": self.period, "n_active": len(self.agents),
                "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, value in state["arrays"].items():
            setattr(self, name, np.array(value, copy=True))
        self.period = int(state["period"])
        self.agents = list(self.possible_agents) if int(state["n_active"]) else []
        self._rng = np.random.default_rng()
        self._rng.bit_generator.state = state["rng"]

    def state(self) -> np.ndarray:
        """Global state: obstacles, agents and goals as a flat float32 grid ``[3 * size * size]``."""
        grid = np.zeros((3, self.size, self.size), dtype=np.float32)
        grid[0] = ~self.free
        grid[1, self.position[:, 0], self.position[:, 1]] = 1.0
        grid[2, self.goal[:, 0], self.goal[:, 1]] = 1.0
        return grid.reshape(-1)


def shortest_path_actions(env: LifelongMAPFEnv, rng: np.random.Generator, epsilon: float = 0.2) -> np.ndarray:
    """``[n_agents]`` actions of the greedy shortest-path planner with simple collision avoidance.

    Pass 1: every agent's best move ignoring the others. Pass 2: cells held by an agent that wants to
    stay, or that wants to swap with us, are avoided; the best remaining move is taken (waiting if none
    helps). With probability ``epsilon`` an agent takes a random usable move (breaks deadlocks).
    """
    size, n = env.size, env.n_agents
    cand = env.position[:, None, :] + MOVES[None, :, :]  # [n, 5, 2]
    inside = ((cand >= 0) & (cand < size)).all(axis=2)
    cc = np.clip(cand, 0, size - 1)
    cell = cc[..., 0] * size + cc[..., 1]
    free = inside & env.free[cc[..., 0], cc[..., 1]]
    goal_cell = env.goal[:, 0] * size + env.goal[:, 1]
    dist = np.where(free, env.distance[cell, goal_cell[:, None]], np.inf) + 1e-3 * rng.random((n, 5))
    wish = np.argmin(dist, axis=1)
    wish_cell = cell[np.arange(n), wish]
    owner = np.full(size * size, -1, dtype=np.int64)
    here = env.position[:, 0] * size + env.position[:, 1]
    owner[here] = np.arange(n)
    occ = owner[cell]  # [n, 5] agent holding each candidate cell (-1: none)
    occ_safe = np.where(occ >= 0, occ, 0)
    staying_or_swapping = (wish[occ_safe] == 0) | (wish_cell[occ_safe] == here[:, None])
    holds = (occ >= 0) & (occ != np.arange(n)[:, None]) & staying_or_swapping
    usable = free & ~holds
    usable[:, 0] = True
    greedy = np.argmin(np.where(usable, dist, np.inf), axis=1)
    random_move = np.argmax(usable * rng.random(usable.shape), axis=1)
    return np.where(rng.random(n) < epsilon, random_move, greedy)


class MAPFAgentsVectorEnv(VectorEnv):
    """One :class:`LifelongMAPFEnv` world as a vector env whose copies are its agents (parameter sharing).

    ``num_envs`` is the number of agents; all copies are truncated together at the horizon and the
    world autoresets in the NEXT_STEP mode. Not ``N`` independent worlds: agents share one map.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 8, **kwargs: Any) -> None:
        self.world = LifelongMAPFEnv(n_agents=num_envs, **kwargs)
        self.num_envs = num_envs
        self.single_observation_space = self.world.observation_space("agent_0")
        self.single_action_space = self.world.action_space("agent_0")
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._needs_reset = False

    def state_dict(self) -> dict[str, Any]:
        return {"world": self.world.state_dict(), "needs_reset": self._needs_reset}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.world.load_state_dict(state["world"])
        self._needs_reset = bool(state["needs_reset"])

    def _info(self) -> dict[str, np.ndarray]:
        return {"goals_reached": self.world.goals_reached.copy(), "_goals_reached": np.ones(self.num_envs, bool)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.world.reset(seed=seed)
        self._needs_reset = False
        return self.world.observation_array(), self._info()

    def step(self, actions: Any):
        n = self.num_envs
        if self._needs_reset:
            obs, info = self.reset()
            return obs, np.zeros(n), np.zeros(n, bool), np.zeros(n, bool), info
        a = np.asarray(actions)
        if a.shape != (n,):
            raise InvalidActionError(f"actions must have shape ({n},), got {a.shape}")
        _, rewards, _, truncs, _ = self.world.step({f"agent_{i}": a[i] for i in range(n)})
        trunc = np.array([truncs[f"agent_{i}"] for i in range(n)])
        self._needs_reset = bool(trunc.any())
        reward = np.array([rewards[f"agent_{i}"] for i in range(n)])
        return self.world.observation_array(), reward, np.zeros(n, bool), trunc, self._info()
