"""Offline preference optimisation (DPO family, RRHF, LiPO) on synthetic ground-truth preferences.

Every method must raise the held-out win rate against the starting policy under the hidden truth
(exactly 0.5 before training: both sides then draw the same samples), DPO must resume bitwise, and
the reference log-probs must be cached once and equal those of the starting model.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from policyopt.app.run import build_trainer, parse_run_config, train
from policyopt.core.config import ConfigError
from policyopt.runtime import checkpoint as ckpt
from tests.algos.offpolicy_helpers import assert_resume_exact, cli
from tests.algos.pref_helpers import pref_run_config, tiny_pref_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_pref_model(tmp_path_factory.mktemp("pref_model") / "tiny")


METHODS = [("dpo", {}), ("dpo", {"loss": "cdpo"}), ("dpo", {"loss": "robust"}), ("ipo", {}), ("slic", {}),
           ("rrhf", {"sft_weight": 0.1}), ("lipo", {}), ("lipo", {"lipo_kind": "list_mle"})]


@pytest.mark.parametrize(("algo", "section"), METHODS, ids=[f"{a}-{s.get('loss', s.get('lipo_kind', ''))}"
                                                            for a, s in METHODS])
def test_method_improves_win_rate_over_start(model_dir, tmp_path, algo, section):
    config = pref_run_config(algo, model_dir, {"learning_rate": 2e-3, **section}, steps=20)
    _, record = train(config, run_dir=tmp_path / "run")
    assert record["eval/win_rate"] > 0.6, record
    assert record["eval/true_reward"] > record["eval/start_true_reward"] + 0.1, record
    assert (tmp_path / "run" / "reference_logps.safetensors").is_file()


def test_win_rate_is_exactly_half_before_training(model_dir, tmp_path):
    cfg = parse_run_config(pref_run_config("dpo", model_dir, steps=2))
    trainer = build_trainer(cfg, tmp_path / "run")
    assert trainer.evaluator.evaluate()["eval/win_rate"] == 0.5


def test_cached_reference_equals_starting_model_and_step0_loss_is_dpo_formula(model_dir, tmp_path):
    from policyopt.algos.dpo import sequence_logps

    cfg = parse_run_config(pref_run_config("dpo", model_dir, {"beta": 0.5}, steps=2))
    trainer = build_trainer(cfg, tmp_path / "run")
    batch = trainer.collector.collect()
    with torch.no_grad():
        lp = sequence_logps(trainer.algorithm.model, *batch.completions())
    pc, pr = lp.chunk(2)
    torch.testing.assert_close(batch.ref_chosen, pc, atol=1e-4, rtol=0)
    torch.testing.assert_close(batch.ref_rejected, pr, atol=1e-4, rtol=0)
    metrics = trainer.algorithm.update(batch)
    h = (pc - batch.ref_chosen) - (pr - batch.ref_rejected)
    expected = float(-torch.nn.functional.logsigmoid(0.5 * h).mean())
    assert math.isclose(metrics["loss/dpo"], expected, abs_tol=1e-6)
    assert abs(metrics["loss/dpo"] - math.log(2)) < 1e-3      # policy == reference at step 0


def test_reference_file_is_reused(model_dir, tmp_path, monkeypatch):
    from policyopt.algos import dpo

    cfg = parse_run_config(pref_run_config("dpo", model_dir, steps=2))
    build_trainer(cfg, tmp_path / "run")
    calls = []
    monkeypatch.setattr(dpo, "reference_table", lambda *a, **k: calls.append(1))
    trainer = build_trainer(cfg, tmp_path / "run")
    assert calls == [] and trainer.collector.reference.shape == (256, 2)


def test_dpo_resume_is_bitwise_exact(model_dir, tmp_path):
    config = pref_run_config("dpo", model_dir, {"learning_rate": 2e-3}, steps=6, batch=48)
    tree = assert_resume_exact(config, tmp_path, until_step=3 * 48)
    assert tree["algorithm"]["num_updates"] == 6
    assert tree["collector"]["epoch"] == 1                       # 288 pairs served from 256: crossed an epoch
    cli("eval", str(tmp_path / "full"))                         # `policyopt eval` re-scores the final checkpoint


def test_bad_configs_name_the_key(model_dir, tmp_path):
    with pytest.raises(ConfigError, match="dpo.beta"):
        parse_run_config(pref_run_config("dpo", model_dir, {"beta": -1.0}))
    with pytest.raises(ConfigError, match="data.synthetic.flip_rate"):
        cfg = parse_run_config(pref_run_config("dpo", model_dir, synthetic={"flip_rate": 0.7}))
        build_trainer(cfg, tmp_path / "a")
    with pytest.raises(ConfigError, match="data.path"):
        cfg = parse_run_config(pref_run_config("dpo", model_dir, {"data": {"source": "jsonl"}}))
        build_trainer(cfg, tmp_path / "b")


def test_listwise_loss_refuses_pair_batches(model_dir, tmp_path):
    from policyopt.algos.dpo import DPO, DPOConfig

    cfg = parse_run_config(pref_run_config("dpo", model_dir, steps=2))
    trainer = build_trainer(cfg, tmp_path / "run")
    algo = DPO(DPOConfig(loss="lipo"), trainer.algorithm.model)
    with pytest.raises(TypeError, match="RankedLists"):
        algo.update(trainer.collector.collect())


def test_jsonl_data_trains(model_dir, tmp_path):
    from policyopt.core.config import build
    from policyopt.data.preference import save_pairs_jsonl
    from policyopt.lm.synthetic_preference import SyntheticConfig, synthetic_pairs

    records, _ = synthetic_pairs(build(SyntheticConfig, {"num_prompts": 64, "max_len": 3}))
    save_pairs_jsonl(records, tmp_path / "pairs.jsonl")
    config = pref_run_config("dpo", model_dir, {"data": {"source": "jsonl", "path": str(tmp_path / "pairs.jsonl")}},
                             steps=2, batch=16)
    _, record = train(config, run_dir=tmp_path / "run")
    assert record["step"] == 32 and np.isfinite(record["loss/dpo"])
    tree, _ = ckpt.load_checkpoint(tmp_path / "run")
    assert tree["collector"]["num_examples"] == 64


PREF_CONFIGS = ["dpo_synthetic", "ipo_synthetic", "slic_synthetic", "rrhf_synthetic", "lipo_synthetic",
                "online_dpo_synthetic", "spo_cyclic", "inpo_cyclic", "egpo_cyclic", "mpo_synthetic",
                "rm_bt_synthetic", "rm_ensemble_synthetic"]


@pytest.mark.parametrize("name", PREF_CONFIGS)
def test_shipped_configs_validate(name):
    from pathlib import Path

    from policyopt.core.config import load_yaml

    cfg = parse_run_config(load_yaml(Path(__file__).resolve().parents[2] / "configs" / f"{name}.yaml"))
    assert cfg.algo == name.split("_")[0] or cfg.algo in ("online_dpo", "reward_model")


def test_packed_forward_matches_padded_rows_values_and_gradients(model_dir, tmp_path):
    from policyopt.algos.dpo import packed_pair_logps, sequence_logps

    cfg = parse_run_config(pref_run_config("dpo", model_dir, steps=2, batch=11,
                                           synthetic={"min_len": 1, "max_len": 4}))
    trainer = build_trainer(cfg, tmp_path / "run")
    model, batch = trainer.algorithm.model, trainer.collector.collect()
    padded = sequence_logps(model, *batch.completions()).chunk(2)
    packed = packed_pair_logps(model, batch, pairs_per_row=3)            # 11 pairs: a ragged last row
    for a, b in zip(padded, packed):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    grads = []
    for out in (padded, packed):
        model.zero_grad()
        (out[0] - 2 * out[1]).sum().backward(retain_graph=True)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-4, rtol=1e-3)
    with torch.no_grad():
        mean_c, _ = packed_pair_logps(model, batch, mean=True)
    torch.testing.assert_close(mean_c, padded[0].detach() / batch.chosen_mask.sum(1), atol=1e-5, rtol=0)
