"""The progress display shows the return for classic runs and the reward (and held-out accuracy) for
LM runs, in both the plain-line and the bar mode."""

from policyopt.runtime.metrics_log import Progress, headline


def test_headline_shows_return_for_classic_and_reward_for_lm_runs():
    assert headline({"reward/episode_return_mean": 21.5}) == "return 21.5"
    assert headline({"reward/mean": 0.4375, "eval/accuracy/all": 0.5}) == "reward 0.4375 | eval acc 0.500"
    assert headline({"loss/dpo": 0.69}) == ""


def test_plain_lines_carry_the_lm_reward(capsys):
    bar = Progress(total=128, start=0, mode="lines", interval_s=0.0)
    bar.update(64, {"reward/mean": 0.25, "step": 64})
    out = capsys.readouterr().out
    assert "step 64/128 (50%)" in out and "reward 0.25" in out
