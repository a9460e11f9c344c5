"""Flushing denormals is scoped to the update: user data keeps its tiny floats afterwards."""

import torch

from policyopt.nets.flat import denormals_flushed

TINY = 5e-320  # a denormal double


def test_flush_is_scoped_to_the_block():
    with denormals_flushed(True):
        assert float(torch.tensor([TINY], dtype=torch.float64) * 1.0) == 0.0
    assert float(torch.tensor([TINY], dtype=torch.float64) * 1.0) == TINY
    assert TINY * 1.0 == TINY


def test_dqn_training_leaves_the_process_flag_alone(tmp_path):
    from policyopt.app.run import train

    cfg = {"algo": "dqn", "env": {"id": "CartPole-v1", "num_envs": 2},
           "dqn": {"learning_starts": 64, "flush_denormal": True},
           "trainer": {"total_steps": 256, "eval_every_steps": 0, "eval_episodes": 2, "progress": "none",
                       "tensorboard": False}}
    train(cfg, run_dir=tmp_path / "dqn")
    assert float(torch.tensor([TINY], dtype=torch.float64) * 1.0) == TINY
