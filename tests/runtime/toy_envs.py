"""Tiny environments with known answers for the runtime and algorithm tests."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class CounterEnv(gym.Env):
    """obs = [steps taken in this episode]; reward 1 per step; never terminates (use TimeLimit)."""

    observation_space = spaces.Box(0.0, 100.0, (1,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([float(self.t)], np.float32), 1.0, False, False, {}


class MaskedBanditEnv(gym.Env):
    """One-step bandit with 4 arms paying [0, 0.5, 1, 2]; arm 3 (the best) is always masked out.

    Taking a masked arm raises, so a policy that ever samples it fails loudly.
    """

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Discrete(4)
    payout = np.array([0.0, 0.5, 1.0, 2.0])
    mask = np.array([True, True, True, False])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {"action_mask": self.mask.copy()}

    def step(self, action):
        if not self.mask[int(action)]:
            raise RuntimeError(f"masked action {action} was taken")
        return np.zeros(2, np.float32), float(self.payout[int(action)]), True, False, {"action_mask": self.mask.copy()}


class TargetEnv(gym.Env):
    """One-step continuous bandit: reward = -|a - target|^2 for Box actions, or the number of
    components equal to ``[2, 0, 1]`` for MultiDiscrete([3, 3, 3])."""

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def __init__(self, kind: str = "box"):
        self.kind = kind
        if kind == "box":
            self.action_space = spaces.Box(-2.0, 2.0, (2,), np.float32)
        else:
            self.action_space = spaces.MultiDiscrete([3, 3, 3])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        if self.kind == "box":
            reward = -float(np.sum((np.asarray(action) - np.array([0.5, -1.0])) ** 2))
        else:
            reward = float(np.sum(np.asarray(action) == np.array([2, 0, 1])))
        return np.zeros(2, np.float32), reward, True, False, {}


def register() -> None:
    if "test/Counter-v0" not in gym.registry:
        gym.register("test/Counter-v0", entry_point=CounterEnv, max_episode_steps=3, disable_env_checker=True)
    for env_id, entry, kwargs in [("test/MaskedBandit-v0", MaskedBanditEnv, {}),
                                  ("test/TargetBox-v0", TargetEnv, {"kind": "box"}),
                                  ("test/TargetMulti-v0", TargetEnv, {"kind": "multi"})]:
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry, kwargs=kwargs, disable_env_checker=True)
