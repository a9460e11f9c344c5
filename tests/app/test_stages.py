"""Stages run under the Trainer: the SFT warm-up of the preference algorithms and MPO's reward model
train into ``run_dir/stages/<name>/`` (one metrics record per update, a checkpoint at the end); a run
built again on the same run dir (resume) restores the finished stage instead of redoing it, bitwise the
same; a stage made with other settings is refused; an interrupted stage stops the run and continues."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from policyopt.app.run import build_trainer, parse_run_config, resume, train
from policyopt.app.stages import run_stage, stage_dir
from policyopt.core.config import ConfigError
from policyopt.runtime import checkpoint as ckpt
from policyopt.runtime.metrics_log import MetricsLog
from tests.algos.offpolicy_helpers import assert_tree_equal, metrics

SYN = {"num_prompts": 64, "task": "addition", "task_params": {"max_digits": 2}, "alphabet": "abcdef",
       "min_len": 2, "max_len": 3}
TRAINER = {"eval_every_steps": 0, "progress": "none", "tensorboard": False, "torch_threads": 1}
WARMUP = 4


def dpo_config(warmup=WARMUP, updates=3):
    return {"algo": "dpo", "seed": 0, "model": {"path": "tiny"}, "trainer": {"total_steps": updates * 16, **TRAINER},
            "dpo": {"sft_warmup_updates": warmup, "data": {"batch_size": 16, "synthetic": SYN}, "eval": {"prompts": 8}}}


def mpo_config(rm_updates=3):
    rl = {"collect": {"prompts_per_step": 4, "completions_per_prompt": 2, "max_new_tokens": 3}}
    return {"algo": "mpo", "seed": 0, "model": {"path": "tiny"}, "trainer": {"total_steps": 2 * 16 + 8, **TRAINER},
            "mpo": {"synthetic": {**SYN, "flip_rate": 0.2}, "rm_updates": rm_updates, "dpo_updates": 2,
                    "batch_size": 16, "eval": {"prompts": 8}, "rl": rl}}


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def snapshot(where):
    """The stage dir's metrics bytes and checkpoint names (what a redone stage would change)."""
    return (where / "metrics.jsonl").read_bytes(), [p.name for p in ckpt.list_checkpoints(where)]


def forbid(monkeypatch, cls):
    def update(self, batch):
        raise AssertionError(f"{cls.__name__}.update called: the finished stage was trained again")

    monkeypatch.setattr(cls, "update", update)


def test_warmup_stage_writes_one_metrics_record_per_update_and_a_checkpoint(tmp_path):
    build_trainer(parse_run_config(dpo_config()), tmp_path)
    where = stage_dir(tmp_path, "sft_warmup")
    rows = MetricsLog.read(where / "metrics.jsonl")
    assert [r["update"] for r in rows] == list(range(1, WARMUP + 1))
    assert [r["step"] for r in rows] == [64 * u for u in range(1, WARMUP + 1)]    # examples, 64 per batch
    assert all("loss/sft" in r for r in rows)
    tree, step = ckpt.load_checkpoint(where)
    assert step == 64 * WARMUP and tree["algorithm"]["num_updates"] == WARMUP
    assert json.loads((where / "stage.json").read_text())["updates"] == WARMUP


def test_rebuilt_run_restores_the_warmup_stage_bitwise_without_training_it_again(tmp_path, monkeypatch):
    from policyopt.algos.sft import SFT

    first = weights(build_trainer(parse_run_config(dpo_config()), tmp_path).algorithm.model)
    before = snapshot(stage_dir(tmp_path, "sft_warmup"))
    forbid(monkeypatch, SFT)
    again = weights(build_trainer(parse_run_config(dpo_config()), tmp_path).algorithm.model)
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert snapshot(stage_dir(tmp_path, "sft_warmup")) == before       # not appended to, no new checkpoint


def test_resume_with_a_warmup_stage_is_exact_and_does_not_redo_the_stage(tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    train(dpo_config(), run_dir=full)
    train(dpo_config(), run_dir=split, until_step=16)
    before = snapshot(stage_dir(split, "sft_warmup"))
    resume(split)
    assert snapshot(stage_dir(split, "sft_warmup")) == before
    assert_tree_equal(ckpt.load_checkpoint(full)[0], ckpt.load_checkpoint(split)[0])
    assert metrics(full) == metrics(split)
    assert metrics(stage_dir(full, "sft_warmup")) == metrics(stage_dir(split, "sft_warmup"))


def test_mpo_reward_model_stage_logs_loss_and_accuracy_and_is_restored_bitwise(tmp_path, monkeypatch):
    from policyopt.algos.reward_model import RewardModelTrainer

    trainer = build_trainer(parse_run_config(mpo_config()), tmp_path)
    where = stage_dir(tmp_path, "reward_model")
    rows = MetricsLog.read(where / "metrics.jsonl")
    assert [r["step"] for r in rows] == [16, 32, 48]                                 # pairs, 16 per batch
    assert all("loss/bradley_terry" in r and "rewards/accuracy" in r for r in rows)
    before, split = snapshot(where), trainer.algorithm.split_info
    forbid(monkeypatch, RewardModelTrainer)
    again = build_trainer(parse_run_config(mpo_config()), tmp_path)
    assert again.algorithm.split_info == split                   # same margins: the same reward model
    assert snapshot(where) == before


def test_stage_made_with_other_settings_is_refused(tmp_path):
    build_trainer(parse_run_config(dpo_config(warmup=2)), tmp_path)
    with pytest.raises(ConfigError, match=r"stage 'sft_warmup' was made with different settings \(updates\)"):
        build_trainer(parse_run_config(dpo_config(warmup=3)), tmp_path)


def test_warmup_without_a_run_dir_gives_the_same_model(tmp_path):
    from policyopt.app.build_pref import starting_model
    from policyopt.lm.source import ModelConfig

    a, _ = starting_model(ModelConfig(path="tiny"), SYN, 2, run_dir=None)
    b, _ = starting_model(ModelConfig(path="tiny"), SYN, 2, run_dir=tmp_path)
    wa, wb = weights(a), weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert len(MetricsLog.read(stage_dir(tmp_path, "sft_warmup") / "metrics.jsonl")) == 2


@dataclass
class Batch:
    value: int
    num_steps: int = 2


class Counter:
    """A collector of 1, 2, 3, ... that raises KeyboardInterrupt (before serving) at ``interrupt_at``."""

    def __init__(self, interrupt_at=None):
        self.next, self.interrupt_at = 1, interrupt_at

    def collect(self):
        if self.next == self.interrupt_at:
            self.interrupt_at = None
            raise KeyboardInterrupt
        self.next += 1
        return Batch(self.next - 1)

    def state_dict(self):
        return {"next": self.next}

    def load_state_dict(self, state):
        self.next = int(state["next"])


class Sum:
    def __init__(self):
        self.total, self.seen = 0, []

    def update(self, batch):
        self.total += batch.value
        self.seen.append(batch.value)
        return {"loss/sum": float(self.total)}

    def state_dict(self):
        return {"total": self.total}

    def load_state_dict(self, state):
        self.total = int(state["total"])


def test_interrupted_stage_stops_the_run_and_continues_where_it_stopped(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_stage("count", Sum(), Counter(interrupt_at=3), 5, 2, tmp_path)
    assert ckpt.load_checkpoint(stage_dir(tmp_path, "count"))[1] == 4          # 2 updates of 2 steps
    algo = Sum()
    record = run_stage("count", algo, Counter(), 5, 2, tmp_path)
    assert algo.seen == [3, 4, 5] and algo.total == 15 and record["update"] == 5
    assert [r["update"] for r in MetricsLog.read(stage_dir(tmp_path, "count") / "metrics.jsonl")] == [1, 2, 3, 4, 5]
