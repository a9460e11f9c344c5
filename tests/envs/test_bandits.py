"""Restless bandits: budget handling, transitions, Whittle index against exact policy evaluation."""

from __future__ import annotations

import numpy as np

from policyopt.envs.bandits import RestlessBanditVectorEnv, baseline_scores, whittle_indices


def test_budget_is_respected_and_arms_are_taken_by_score():
    env = RestlessBanditVectorEnv(num_envs=1, n_arms=4, budget=2.0)
    cost = np.array([[1.0, 0.5, 1.0, 0.8]])
    active = env.chosen_arms(np.array([[0.9, 0.2, 0.8, 0.7]]), cost)
    assert active.tolist() == [[True, False, True, False]]  # 0.9 (1.0) + 0.8 (1.0) = 2.0; 0.7 does not fit
    active = env.chosen_arms(np.array([[0.9, 0.6, -0.4, 0.55]]), cost)
    assert active.tolist() == [[True, True, False, False]]  # 1.0 + 0.5, then 0.8 would exceed 2.0
    active = env.chosen_arms(np.array([[0.9, -0.6, -0.4, -0.55]]), cost)
    assert active.tolist() == [[True, False, False, False]]  # negative scores are not requested
    env = RestlessBanditVectorEnv(num_envs=64, n_arms=10, budget=3.0)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        env.step(rng.normal(size=(64, 10)).astype(np.float32))
        assert ((env.active * env.cost).sum(axis=1) <= 3.0 + 1e-9).all()


def test_transition_frequencies_match_probabilities():
    env = RestlessBanditVectorEnv(num_envs=2000, n_arms=2, budget=1.0, random_costs=False)
    env.reset(seed=0)
    env.state[:] = 0
    p_act, p_pas = env.p_active[:, 0, 0].copy(), env.p_passive[:, 1, 0].copy()
    env.step(np.tile([[1.0, 0.0]], (2000, 1)).astype(np.float32))  # act on arm 0 only
    assert abs(env.state[:, 0].mean() - p_act.mean()) < 4 * 0.5 / np.sqrt(2000)
    assert abs(env.state[:, 1].mean() - p_pas.mean()) < 4 * 0.5 / np.sqrt(2000)


def _discounted_values(pp, pa, value, lam, policy, gamma):
    """Exact values of a stationary policy (policy[s] = 1 acts) on a subsidised two-state arm."""
    p = np.where(policy == 1, pa, pp)
    r = p * value + lam * (policy == 0)
    trans = np.stack([1 - p, p], axis=1)
    return np.linalg.solve(np.eye(2) - gamma * trans, r)


def test_whittle_index_is_the_indifference_subsidy():
    rng = np.random.default_rng(0)
    for _ in range(5):
        pp = np.array([rng.uniform(0.05, 0.45), rng.uniform(0.4, 0.8)])
        pa = np.minimum(pp + rng.uniform(0.05, 0.45, 2), 0.99)
        value = rng.uniform(0.5, 1.5)
        w = whittle_indices(pp[None], pa[None], np.array([value]), gamma=0.95, iters=40, vi_iters=400)[0]
        for s in range(2):
            for lam, acts in ((w[s] - 0.02, True), (w[s] + 0.02, False)):
                best = max(((a0, a1) for a0 in (0, 1) for a1 in (0, 1)),
                           key=lambda pol: _discounted_values(pp, pa, value, lam, np.array(pol), 0.95).sum())
                assert (best[s] == 1) == acts, (s, lam, w)


def test_whittle_beats_myopic_beats_random():
    totals = {}
    for name in ("random", "myopic", "whittle"):
        env = RestlessBanditVectorEnv(num_envs=128, n_arms=8, budget=2.5, horizon=50)
        env.reset(seed=1)
        w = None
        if name == "whittle":
            w = whittle_indices(env.p_passive, env.p_active, env.value, iters=20, vi_iters=80)
        rows, total, rng = np.arange(128), 0.0, np.random.default_rng(0)
        for _ in range(50):
            r, _, _ = env._step_rows(rows, baseline_scores(env, name, rng, w))
            total += r.mean()
        totals[name] = total
    assert totals["whittle"] > totals["myopic"] > totals["random"] + 10
