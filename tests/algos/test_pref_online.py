"""Online and self-play preference methods on synthetic ground truths.

Transitive truth: every method raises the held-out win rate against the starting policy.
Intransitive (rock-paper-scissors) truth, starting from a policy skewed towards one class: SPO and
INPO are not worse than offline DPO against the start, and they are far less exploitable
(worst-case win rate against pure strategies), with EGPO closest to the Nash value 0.5.
"""

from __future__ import annotations

import pytest

from policyopt.app.run import train
from tests.algos.offpolicy_helpers import assert_resume_exact
from tests.algos.pref_helpers import SYNTHETIC, pref_run_config, tiny_pref_model

SKEW = (0.3, 0.1, 0.1, 0.3, 0.1, 0.1)       # classes (a,d)=0: 60%, (b,e)=1: 20%, (c,f)=2: 20%


@pytest.fixture(scope="module")
def uniform_model(tmp_path_factory):
    return tiny_pref_model(tmp_path_factory.mktemp("pref_u") / "tiny")


@pytest.fixture(scope="module")
def skewed_model(tmp_path_factory):
    return tiny_pref_model(tmp_path_factory.mktemp("pref_c") / "tiny", behaviour=SKEW)


def online_config(algo, model_dir, section=None, steps=15, prompts=16, group=2, synthetic=None, seed=0):
    return {"algo": algo, "seed": seed, "model": {"path": str(model_dir)},
            "trainer": {"total_steps": steps * prompts * group, "eval_every_steps": 0, "progress": "none",
                        "tensorboard": False, "torch_threads": 1},
            algo: {"synthetic": {**SYNTHETIC, **(synthetic or {})},
                   "prompts_per_step": prompts, "completions_per_prompt": group, "eval": {"prompts": 48},
                   **(section or {})}}


ONLINE = [("online_dpo", {}, 2), ("online_dpo", {"method": "online_ipo"}, 2), ("spo", {}, 4), ("inpo", {}, 2),
          ("egpo", {}, 2), ("online_dpo", {"judge": "truth_reward"}, 2)]


@pytest.mark.parametrize(("algo", "section", "group"), ONLINE,
                         ids=["online_dpo", "online_ipo", "spo", "inpo", "egpo", "online_dpo_reward_judge"])
def test_online_method_improves_win_rate(uniform_model, tmp_path, algo, section, group):
    lr = {} if algo == "egpo" else {"learning_rate": 2e-3}
    config = online_config(algo, uniform_model, {**lr, **section}, group=group, steps=15 if group == 2 else 8)
    _, record = train(config, run_dir=tmp_path / "run")
    assert record["eval/win_rate"] > 0.7, record
    assert record["eval/true_reward"] > record["eval/start_true_reward"] + 0.3, record


def test_intransitive_preferences_spo_inpo_not_worse_than_dpo(skewed_model, tmp_path):
    cyclic = {"kind": "cyclic", "behaviour": SKEW}
    _, dpo = train(pref_run_config("dpo", skewed_model, {"learning_rate": 2e-3}, steps=20, synthetic=cyclic),
                   run_dir=tmp_path / "dpo")
    results = {}
    for algo, group, extra in (("spo", 4, {"learning_rate": 2e-3}), ("inpo", 2, {"learning_rate": 2e-3}),
                               ("egpo", 2, {})):
        cfg = online_config(algo, skewed_model, extra, steps=20 if group == 2 else 10, group=group,
                            synthetic=cyclic)
        results[algo] = train(cfg, run_dir=tmp_path / algo)[1]
    for algo in ("spo", "inpo"):
        assert results[algo]["eval/win_rate"] >= dpo["eval/win_rate"] - 0.01, (algo, results[algo], dpo)
        assert results[algo]["eval/win_rate"] > 0.55
    for algo in ("spo", "inpo", "egpo"):
        assert results[algo]["eval/worst_case_win_rate"] > dpo["eval/worst_case_win_rate"] + 0.05, (algo, dpo)
    assert abs(results["egpo"]["eval/worst_case_win_rate"] - 0.5) < 0.1       # close to the Nash value


def test_spo_resume_is_bitwise_exact(uniform_model, tmp_path):
    config = online_config("spo", uniform_model, {"learning_rate": 2e-3}, steps=4, prompts=8, group=4)
    tree = assert_resume_exact(config, tmp_path, until_step=2 * 32)
    assert tree["algorithm"]["num_updates"] == 4


def test_pairwise_methods_need_pairs(uniform_model, tmp_path):
    from policyopt.core.config import ConfigError

    with pytest.raises((ValueError, ConfigError), match="completions_per_prompt must be 2"):
        train(online_config("inpo", uniform_model, group=4), run_dir=tmp_path / "run")
