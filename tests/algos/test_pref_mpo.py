"""MPO: the reward-model margin separates clean (easy) from mislabelled (hard) pairs; DPO on the easy
pairs then RL on the hard prompts with the DPO model as reference improves the win rate; the switch
moves the reference; resume is exact across the stage switch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policyopt.app.run import build_trainer, parse_run_config, train
from policyopt.runtime import checkpoint as ckpt
from tests.algos.offpolicy_helpers import assert_tree_equal, cli, metrics
from tests.algos.pref_helpers import SYNTHETIC, tiny_pref_model

RL = {"kl_coef": 0.05, "learning_rate": 2e-3, "collect": {"prompts_per_step": 8, "completions_per_prompt": 4,
                                                          "max_new_tokens": 3}}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_pref_model(tmp_path_factory.mktemp("pref_mpo") / "tiny")


def mpo_config(model_dir, dpo_updates=10, rl_updates=10, seed=0, **section):
    return {"algo": "mpo", "seed": seed, "model": {"path": str(model_dir)},
            "trainer": {"total_steps": dpo_updates * 32 + rl_updates * 32, "eval_every_steps": 0, "progress": "none",
                        "tensorboard": False, "torch_threads": 1},
            "mpo": {"synthetic": {**SYNTHETIC, "flip_rate": 0.2}, "eval": {"prompts": 48},
                    "dpo_updates": dpo_updates, "rl": RL, **section}}


def test_split_puts_mislabelled_pairs_in_the_hard_set(model_dir, tmp_path):
    from policyopt.algos.mpo import split_by_margin

    easy, hard = split_by_margin(np.array([0.5, -1.0, 2.0, 0.1]), 0.5)
    assert easy.tolist() == [0, 2] and hard.tolist() == [1, 3]
    trainer = build_trainer(parse_run_config(mpo_config(model_dir, rm_updates=40)), tmp_path / "run")
    info = trainer.algorithm.split_info
    assert info["easy_pairs"] == info["hard_pairs"] == 128
    assert info["easy_flipped_frac"] < 0.08 and info["hard_flipped_frac"] > 0.3, info


def test_mpo_improves_win_rate_and_switches_reference(model_dir, tmp_path):
    cfg = parse_run_config(mpo_config(model_dir, reward="truth"))
    trainer = build_trainer(cfg, tmp_path / "run")
    policy = trainer.algorithm.policy
    start = {k: v.clone() for k, v in policy.reference_model.state_dict().items()}
    trainer.run(until_step=10 * 32)                                   # DPO stage only
    assert not trainer.algorithm.switched
    dpo_weights = {k: v.clone() for k, v in policy.model.state_dict().items()}
    record = trainer.run()
    assert trainer.algorithm.switched
    ref = policy.reference_model.state_dict()
    assert all(torch.equal(ref[k], dpo_weights[k]) for k in ref)     # the reference is the DPO model
    assert not all(torch.equal(ref[k], start[k]) for k in ref)
    assert record["eval/win_rate"] > 0.75 and "stats/kl_ref" in record, record


def assert_resume_exact(config, tmp_path, until_step):
    """N in one go vs k + ``policyopt resume`` in a new process; metrics compared except time/* and mem/*
    (the RL stage logs the process's peak RSS, which differs between processes by nature)."""
    full, split = tmp_path / "full", tmp_path / "split"
    train(config, run_dir=full)
    train(config, run_dir=split, until_step=until_step)
    cli("resume", str(split))
    a, b = ckpt.load_checkpoint(full)[0], ckpt.load_checkpoint(split)[0]
    assert_tree_equal(a, b)
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("mem/")} for r in rows]  # noqa: E731
    assert strip(metrics(full)) == strip(metrics(split))
    return a


def test_mpo_resume_across_the_switch_is_exact(model_dir, tmp_path):
    config = mpo_config(model_dir, dpo_updates=3, rl_updates=3, reward="truth")
    tree = assert_resume_exact(config, tmp_path, until_step=4 * 32)     # checkpoint after the switch
    assert tree["algorithm"]["switched"] and "reference" in tree["algorithm"]
    assert_resume_exact(config, tmp_path / "b", until_step=2 * 32)     # checkpoint before the switch
