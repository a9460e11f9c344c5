"""Batched evaluation: ``episodes`` copies of the env each play one episode, all at once."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from policyopt.runtime.collectors import ObsAdapter


class EpisodeEvaluator:
    """Plays one episode in each of ``episodes`` env copies with the current policy.

    The env copies are reset with the same ``seed`` at every evaluation, so successive evaluations
    score the same start states, and evaluation never touches training RNG or env state.
    ``normalize`` applies the training collector's frozen observation normaliser.
    """

    def __init__(self, make_env: Callable[[int], object], policy, episodes: int, seed: int,
                 normalize: Callable[[np.ndarray], np.ndarray] | None = None, deterministic: bool = True,
                 max_steps: int = 100_000):
        self.make_env, self.policy, self.episodes, self.seed = make_env, policy, episodes, seed
        self.normalize, self.deterministic, self.max_steps = normalize, deterministic, max_steps
        self._env = None
        self._adapter: ObsAdapter | None = None

    def evaluate(self) -> dict[str, float]:
        returns, lengths = self.run_episodes()
        return {"eval/return_mean": float(returns.mean()), "eval/return_std": float(returns.std()),
                "eval/length_mean": float(lengths.mean())}

    def run_episodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Returns ``(returns [episodes], lengths [episodes])`` of the first episode of each copy."""
        if self._env is None:
            self._env = self.make_env(self.episodes)
            self._adapter = ObsAdapter(self._env.single_observation_space)
        env, n = self._env, self.episodes
        raw, info = env.reset(seed=self.seed)
        ret, length = np.zeros(n), np.zeros(n, np.int64)
        done = np.zeros(n, bool)
        gen = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            for _ in range(self.max_steps):
                flat, mask = self._adapter(raw, info)
                if self.normalize is not None:
                    flat = self.normalize(flat)
                a, _, _ = self.policy.act(torch.from_numpy(flat), None if mask is None else torch.from_numpy(mask),
                                          gen, deterministic=self.deterministic)
                raw, r, term, trunc, info = env.step(self.policy.to_env_actions(a))
                ret += np.where(done, 0.0, r)
                length += ~done
                done |= term | trunc
                if done.all():
                    break
        return ret, length

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
