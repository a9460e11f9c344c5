"""DQN: learns CartPole within a small budget, respects action masks, resumes exactly."""

import warnings

import pytest
import torch

from policyopt.app.run import build_trainer, parse_run_config, train
from policyopt.runtime.checkpoint import load_checkpoint
from tests.algos.offpolicy_helpers import assert_resume_exact
from tests.multiseed import at_least
from tests.runtime.toy_envs import register

register()


def cartpole(total_steps: int, seed: int = 0, **dqn) -> dict:
    cfg = {"learning_rate": 2.3e-3, "batch_size": 64, "learning_starts": 500, "train_freq": 16, "gradient_steps": 16,
           "target_update_interval": 256, "exploration_fraction": 0.25, "exploration_final_eps": 0.02,
           "hidden_sizes": [64, 64], "replay": {"buffer_size": 50000, "n_step": 3}}
    cfg.update(dqn)
    env = {"id": "CartPole-v1", "num_envs": 4, "vectorization": "vector_entry_point"}
    trainer = {"total_steps": total_steps, "eval_every_steps": 1024, "eval_episodes": 10, "progress": "none",
               "tensorboard": False, "stop_at_eval_return": 300}
    return {"algo": "dqn", "seed": seed, "env": env, "dqn": cfg, "trainer": trainer}


def test_dqn_learns_cartpole(tmp_path):
    """DQN reaches greedy eval return 300 (10 episodes, every 1024 steps) within 20480 steps; a random
    policy scores ~20, the untrained greedy one ~10. Pass rule: seeds 0-4, at least 3 of 5.
    Measured: 12 of 12 seeds (0-11; slowest at 17408 steps). The former single-seed 12288-step budget
    held on only 6 of 12 seeds here."""
    torch.set_num_threads(1)

    def reached(seed):
        _, record = train(cartpole(20480, seed=seed), run_dir=tmp_path / f"run{seed}")
        return record["eval/return_mean"]

    at_least(3, range(5), reached, lambda ret: ret >= 300, "DQN CartPole eval return")


def test_dqn_never_takes_masked_actions_and_learns_the_best_allowed_one(tmp_path):
    # the bandit raises if the masked (best-paying) arm is ever played, while exploring or evaluating
    config = {"algo": "dqn", "seed": 3, "env": {"id": "test/MaskedBandit-v0", "num_envs": 4},
              "dqn": {"learning_rate": 1e-2, "batch_size": 32, "learning_starts": 64, "train_freq": 4,
                      "gradient_steps": 4, "target_update_interval": 64, "exploration_fraction": 0.5,
                      "hidden_sizes": [16], "double_q": True, "dueling": True, "replay": {"n_step": 2}},
              "trainer": {"total_steps": 1600, "eval_every_steps": 0, "eval_episodes": 4, "progress": "none",
                          "tensorboard": False}}
    run_dir, record = train(config, run_dir=tmp_path / "run")
    assert record["eval/return_mean"] == 1.0   # arm 2 pays 1.0; arm 3 (2.0) is masked
    trainer = build_trainer(parse_run_config(config), tmp_path / "probe")
    q = trainer.algorithm
    q.load_state_dict(load_checkpoint(run_dir)[0]["algorithm"])
    values = q.q.forward(torch.zeros(1, 2))[0]
    assert values[:3].argmax().item() == 2 and abs(values[2].item() - 1.0) < 0.2


SAME_STEP = {"env": {"vectorization": "sync", "autoreset": "same_step"}}
RAINBOWISH = {"double_q": True, "dueling": True, "tau": 0.5,
              "replay": {"buffer_size": 4000, "n_step": 3, "prioritized": True}}


@pytest.mark.parametrize("variant", [SAME_STEP, RAINBOWISH])
def test_dqn_resume_is_bitwise_exact(tmp_path, variant):
    config = cartpole(1600, learning_starts=200, train_freq=8, gradient_steps=4, target_update_interval=100,
                      hidden_sizes=[32], **{k: v for k, v in variant.items() if k != "env"})
    config["env"].update(num_envs=2, **variant.get("env", {}))
    config["trainer"].update(eval_every_steps=512, eval_episodes=3, stop_at_eval_return=None)
    tree = assert_resume_exact(config, tmp_path, until_step=800)
    replay = tree["collector"]["replay"]
    assert int(replay["size"].sum()) > 1000                     # the buffer travelled with the checkpoint
    assert ("priorities" in replay) == ("replay" in variant)


def test_checkpoint_without_replay_warns_loudly(tmp_path):
    config = cartpole(256, learning_starts=64, train_freq=8, gradient_steps=1, hidden_sizes=[8],
                      replay={"save_replay": False})
    config["trainer"].update(eval_every_steps=0, eval_episodes=1, stop_at_eval_return=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(config, run_dir=tmp_path / "run")
    assert any("does NOT contain the replay buffer" in str(w.message) for w in caught)
