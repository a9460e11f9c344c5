"""Real-time bidding: second-price auction, budget, log statistics, pacing baselines."""

from __future__ import annotations

import numpy as np

from policyopt.envs.bidding import BiddingVectorEnv, evaluate_bids, synthetic_auction_log, tune_baseline


def test_second_price_auction_and_budget():
    env = BiddingVectorEnv(num_envs=1, n_requests=4, reward="click")
    env.reset(seed=0)
    env.market_price[0] = [10.0, 50.0, 20.0, 30.0]
    env.clicks[0] = [1, 1, 0, 1]
    env.budget[:] = env.remaining[:] = 45.0
    bids = [60.0, 40.0, 60.0, 60.0]  # win (pay 10), lose (bid < price), win (pay 20), lose (budget 15 < 30)
    rewards = [env.step(np.array([[b / env.max_bid]], dtype=np.float32))[1][0] for b in bids]
    assert rewards == [1.0, 0.0, 0.0, 0.0]
    assert np.isclose(env.remaining[0], 15.0) and env.wins[0] == 2


def test_auction_log_statistics():
    log = synthetic_auction_log(20_000, seed=0)
    env = BiddingVectorEnv(num_envs=1)
    assert abs(log["click"].mean() - env.ctr_mean) < 0.005
    assert abs(log["pctr"].mean() - env.ctr_mean) < 0.002
    logp = np.log(log["market_price"])
    assert abs(logp.mean() - 4.0) < 0.02 and abs(logp.std() - np.hypot(0.5, 0.3)) < 0.02
    assert np.corrcoef(np.log(log["pctr"] / (1 - log["pctr"])), logp)[0, 1] > 0.4  # valuable requests cost more


def test_linear_and_paced_bidding_beat_constant_on_held_out_campaigns():
    scores = {}
    for name in ("constant", "linear", "paced_linear"):
        base = tune_baseline(name, episodes=16, seed=0, grid=20)["base"]
        scores[name] = evaluate_bids(name, np.array([base]), episodes=64, seed=5000)[0]
    assert scores["linear"] > 1.3 * scores["constant"]
    assert scores["paced_linear"] > 0.95 * scores["linear"]
    env = BiddingVectorEnv(num_envs=64)
    env.reset(seed=5000)
    assert max(scores.values()) < env.pctr.sum(axis=1).mean()  # cannot win more than every request
