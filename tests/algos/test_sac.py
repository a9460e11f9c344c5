"""SAC: learns a tiny continuous task, discrete SAC with masks, temperature tuning, exact resume."""

import math

import numpy as np
import torch

from policyopt.runtime.run import train
from tests.algos.offpolicy_helpers import assert_resume_exact
from tests.runtime.toy_envs import register

register()


def config(env_id: str, total_steps: int, num_envs: int = 4, **sac) -> dict:
    cfg = {"learning_rate": 3e-3, "batch_size": 64, "learning_starts": 128, "hidden_sizes": [32, 32]}
    cfg.update(sac)
    return {"algo": "sac", "seed": 0, "env": {"id": env_id, "num_envs": num_envs}, "sac": cfg,
            "trainer": {"total_steps": total_steps, "eval_every_steps": 0, "eval_episodes": 4, "progress": "none",
                        "tensorboard": False}}


def test_sac_learns_a_continuous_target(tmp_path):
    # reward = -|a - (0.5, -1)|^2 with a in [-2, 2]^2: uniformly random actions score about -3.9
    torch.set_num_threads(1)
    _, record = train(config("test/TargetBox-v0", 2400), run_dir=tmp_path / "run")
    assert record["eval/return_mean"] > -0.05, record
    # the temperature was tuned down from 1 towards the entropy target
    assert record["stats/alpha"] < 0.5


def test_discrete_sac_learns_the_best_allowed_arm_and_never_plays_a_masked_one(tmp_path):
    # MaskedBandit raises if arm 3 (masked, pays 2) is played; arm 2 pays 1
    _, record = train(config("test/MaskedBandit-v0", 1200, learning_starts=64), run_dir=tmp_path / "run")
    assert record["eval/return_mean"] == 1.0
    assert math.isfinite(record["loss/critic"]) and record["stats/alpha"] > 0


def test_sac_resume_is_bitwise_exact_including_alpha_and_replay(tmp_path):
    cfg = config("Pendulum-v1", 480, num_envs=2, learning_starts=64, batch_size=32, hidden_sizes=[16],
                 replay={"n_step": 2})
    cfg["trainer"].update(eval_every_steps=160, eval_episodes=2)
    tree = assert_resume_exact(cfg, tmp_path, until_step=240)
    log_alpha = tree["algorithm"]["log_alpha"]
    assert float(log_alpha[0]) != 0.0                      # tuned away from log(1) and restored exactly
    # 240 vector steps per copy; the NEXT_STEP reset after the 200-step time limit is not a transition
    assert np.asarray(tree["collector"]["replay"]["size"]).tolist() == [239, 239]


def test_sac_with_prioritized_n_step_replay_updates_priorities(tmp_path):
    from policyopt.runtime.checkpoint import load_checkpoint

    cfg = config("test/TargetBox-v0", 600, learning_starts=64, replay={"prioritized": True, "n_step": 2})
    run_dir, record = train(cfg, run_dir=tmp_path / "run")
    replay = load_checkpoint(run_dir)[0]["collector"]["replay"]
    prio = np.asarray(replay["priorities"])
    # one-step episodes under NEXT_STEP: every other vector step is a reset, so 300 transitions
    assert int(np.asarray(replay["size"]).sum()) == 300 == int((prio > 0).sum())
    assert len(np.unique(prio[prio > 0])) > 100                # |TD| priorities written back per sample
    assert record["eval/return_mean"] > -1.0                    # still learns (random: about -3.9)
