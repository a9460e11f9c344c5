"""Job shop: makespan against an independent simulator, CP-SAT optimum, rules, loaders, invalid actions."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from policyopt.envs import InvalidActionError
from policyopt.envs.jobshop import JobShopVectorEnv
from policyopt.envs.jobshop_baselines import (
    RULES,
    dispatch_order_of,
    giffler_thompson_candidates,
    instances_of,
    makespan_of_sequence,
    rule_actions,
    solve_cpsat,
)
from policyopt.envs.jobshop_instances import load_instance, parse_instance, parse_taillard


def _random_sequences(env, rng):
    """Dispatch random valid jobs in every copy; returns the per-copy job sequences and the returns."""
    _, info = env.reset(seed=int(rng.integers(1000)))
    lb0 = env.bound.copy()
    seqs, returns = [[] for _ in range(env.num_envs)], np.zeros(env.num_envs)
    for _ in range(env.n_jobs * env.n_machines):
        a = (rng.random(info["action_mask"].shape) * info["action_mask"]).argmax(1)
        for i, job in enumerate(a):
            seqs[i].append(int(job))
        _, r, term, _, info = env.step(a)
        returns += r
    assert term.all()
    return seqs, returns, lb0


@pytest.mark.parametrize("instance", ["ft06", "la01", None])
def test_env_makespan_equals_independent_simulation(instance):
    env = JobShopVectorEnv(num_envs=8, instance=instance, n_jobs=5, n_machines=4)
    rng = np.random.default_rng(0)
    for _ in range(2):
        seqs, returns, lb0 = _random_sequences(env, rng)
        instances = instances_of(env)
        for i in range(env.num_envs):
            expected = makespan_of_sequence(instances[i], seqs[i])
            assert info_makespan(env)[i] == expected
        # the dense lower-bound rewards telescope to (LB_0 - makespan) / scale
        assert np.allclose(returns, (lb0 - env.makespan()) / env.reward_scale)


def info_makespan(env):
    return env._infos()["makespan"]


def test_cpsat_reaches_55_on_ft06_and_env_reproduces_it():
    ft06 = load_instance("ft06")
    result = solve_cpsat(ft06, time_limit_s=30)
    assert result["optimal"] and result["makespan"] == 55 and result["bound"] == 55
    starts, ends = result["starts"], result["starts"] + ft06.durations
    assert (starts[:, 1:] >= ends[:, :-1]).all(), "job precedence violated"
    for m in range(ft06.n_machines):  # no two operations overlap on a machine
        s, e = starts[ft06.machines == m], ends[ft06.machines == m]
        order = np.argsort(s)
        assert (s[order][1:] >= e[order][:-1]).all()
    env = gymnasium.make("policyopt/JobShop-v0", instance="ft06").unwrapped
    env.reset(seed=0)
    for job in dispatch_order_of(starts):
        *_, terminated, _, info = env.step(job)
    assert terminated and info["makespan"] == 55


def test_rules_are_valid_and_match_independent_makespans_on_ft06():
    ft06 = load_instance("ft06")
    results = {}
    for rule in RULES:
        env = JobShopVectorEnv(num_envs=1, instance="ft06")
        _, info = env.reset(seed=0)
        seq = []
        for _ in range(36):
            a = rule_actions(env, rule)
            assert info["action_mask"][0, a[0]]
            seq.append(int(a[0]))
            _, _, _, _, info = env.step(a)
        results[rule] = int(env.makespan()[0])
        assert results[rule] == makespan_of_sequence(ft06, seq)
        assert results[rule] >= 55
    # values of these rules under append (semi-active) dispatching, regression-pinned
    assert results == {"SPT": 109, "MWKR": 74, "MOPNR": 60, "FIFO": 65,
                       "SPT+GT": 94, "MWKR+GT": 67, "MOPNR+GT": 60, "FIFO+GT": 65}


def test_giffler_thompson_candidates_are_never_empty_and_start_before_the_earliest_completion():
    env = JobShopVectorEnv(num_envs=32)
    env.reset(seed=4)
    for _ in range(36):
        allowed = giffler_thompson_candidates(env)
        assert allowed.any(axis=1).all()
        finished, _, duration = env._next_op_view()
        ect = np.where(finished, 10**9, env.earliest_starts() + duration).min(axis=1)
        assert (np.where(allowed, env.earliest_starts(), -1).max(axis=1) < ect).all()
        env.step(rule_actions(env, "MWKR+GT"))


def test_first_spt_choice_is_the_shortest_next_operation():
    env = JobShopVectorEnv(num_envs=1, instance="ft06")
    env.reset(seed=0)
    # first operations of ft06 take 1, 8, 5, 5, 9, 3: SPT picks job 0, MWKR the job with most work
    assert rule_actions(env, "SPT")[0] == 0
    assert rule_actions(env, "MWKR")[0] == int(np.argmax(load_instance("ft06").durations.sum(1)))
    with pytest.raises(ValueError, match="unknown dispatching rule"):
        rule_actions(env, "LPT?")


def test_invalid_actions_raise_clear_errors():
    env = JobShopVectorEnv(num_envs=2, instance="ft06")
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="out of range"):
        env.step(np.array([0, 6]))
    with pytest.raises(InvalidActionError, match="integers"):
        env.step(np.array([0.5, 1.0]))
    for _ in range(6):  # finish job 0 in copy 0
        env.step(np.array([0, 1]))
    with pytest.raises(InvalidActionError, match=r"masked.*copies \[0\]"):
        env.step(np.array([0, 2]))
    single = gymnasium.make("policyopt/JobShop-v0").unwrapped
    single.reset(seed=0)
    with pytest.raises(InvalidActionError, match="out of range"):
        single.step(-1)


def test_breakdowns_delay_and_are_seeded():
    def run(prob, seed):
        env = JobShopVectorEnv(num_envs=4, instance="la01", breakdown_prob=prob, max_repair=20)
        env.reset(seed=seed)
        rows = np.arange(4)
        for _ in range(50):
            env._step_rows(rows, rule_actions(env, "MWKR"))
        return env.makespan()

    base = run(0.0, 0)
    broken, again, other = run(0.3, 0), run(0.3, 0), run(0.3, 1)
    assert (broken > base).all() and np.array_equal(broken, again) and not np.array_equal(broken, other)


def test_random_instances_are_taillard_style():
    env = JobShopVectorEnv(num_envs=16, n_jobs=6, n_machines=6, max_duration=99)
    env.reset(seed=0)
    assert np.array_equal(np.sort(env.machines, axis=2), np.broadcast_to(np.arange(6), env.machines.shape))
    assert env.durations.min() >= 1 and env.durations.max() <= 99
    assert len({env.durations[i].tobytes() for i in range(16)}) == 16


def test_taillard_and_orlib_formats_agree():
    ft06 = load_instance("ft06")
    times = "\n".join(" ".join(map(str, row)) for row in ft06.durations)
    machines = "\n".join(" ".join(str(m + 1) for m in row) for row in ft06.machines)
    text = f"Nb of jobs, Nb of Machines\n6 6 123 456\nTimes\n{times}\nMachines\n{machines}\n"
    parsed = parse_instance(text, "ft06")
    assert np.array_equal(parsed.machines, ft06.machines) and np.array_equal(parsed.durations, ft06.durations)
    assert parsed.optimum == 55
    with pytest.raises(ValueError, match="expected 36"):
        parse_taillard(text.replace("\n8 5 10", "\n8 5"), "broken")
    with pytest.raises(FileNotFoundError, match="shipped"):
        load_instance("no_such_instance")


def test_instance_pool_draws_each_instance_and_rejects_mixed_sizes():
    ft06 = load_instance("ft06")
    other = parse_instance("2 2\n0 1 1 2\n1 3 0 4\n", "tiny")
    shuffled = type(ft06)("ft06_rev", ft06.machines[::-1].copy(), ft06.durations[::-1].copy())
    env = JobShopVectorEnv(num_envs=64, instance=[ft06, shuffled])
    env.reset(seed=0)
    first = np.array([np.array_equal(d, ft06.durations) for d in env.durations])
    assert 10 < first.sum() < 54  # both instances are drawn
    again = JobShopVectorEnv(num_envs=64, instance=["ft06", shuffled])
    again.reset(seed=0)
    assert np.array_equal(again.durations, env.durations)  # seeded, names or objects alike
    with pytest.raises(ValueError, match="one size"):
        JobShopVectorEnv(num_envs=2, instance=[ft06, other])
