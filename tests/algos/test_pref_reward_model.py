"""Reward models: Bradley-Terry learns the synthetic truth, the ensemble's preference strength finds
flipped labels, binary-feedback and cost objectives learn their labels, RewardFn consistency, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policyopt.algos.reward_model import (
    LabelledResponses,
    RewardModel,
    RewardModelConfig,
    RewardModelTrainer,
    as_reward_fn,
)
from policyopt.core.config import build
from policyopt.data.preference import PairTable
from policyopt.eval.preference import pair_accuracy
from policyopt.lm.synthetic_preference import SyntheticConfig, synthetic_pairs
from policyopt.runtime.lm_collectors import PreferenceCollector

DATA = {"task": "addition", "task_params": {"max_digits": 2}, "alphabet": "abcdef", "min_len": 2, "max_len": 4}


def body(seed: int):
    from transformers import LlamaConfig, LlamaModel

    from policyopt.lm.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    return LlamaModel(cfg), tok


def trained(records, k=1, updates=60, strength=None, seed=0, **cfg):
    torch.set_num_threads(1)
    members = [RewardModel(body(seed + i)[0], seed=seed + i) for i in range(k)]
    _, tok = body(0)
    table = PairTable.from_records(records, tok)
    trainer = RewardModelTrainer(build(RewardModelConfig, {"ensemble_size": k, "learning_rate": 3e-3, **cfg}),
                                 members, len(table))
    if strength is not None:
        trainer.apply_strength(strength, flip_below=0.0)
    collector = PreferenceCollector(table, None, 32, seed=seed)
    for _ in range(updates):
        trainer.update(collector.collect())
    return trainer, table, tok


@pytest.fixture(scope="module")
def tok():
    return body(0)[1]


@pytest.fixture(scope="module")
def test_table(tok):
    test, _ = synthetic_pairs(build(SyntheticConfig, {**DATA, "num_prompts": 200, "split": "eval", "seed": 5}))
    return PairTable.from_records(test, tok)


def test_bradley_terry_learns_the_truth(test_table, tok):
    records, truth = synthetic_pairs(build(SyntheticConfig, {**DATA, "num_prompts": 480}))
    trainer, _, _ = trained(records)
    rc, rr = trainer.table_rewards(test_table)
    assert pair_accuracy(rc[0], rr[0]) > 0.85
    fn = as_reward_fn(trainer, tok)
    best = truth.alphabet[int(np.argmax(truth.utility))] * 3
    worst = truth.alphabet[int(np.argmin(truth.utility))] * 3
    scores = fn(["12+3=", "12+3="], [best, worst])
    assert scores[0] > scores[1]
    # the RewardFn scores a pair exactly like training does (left-padded whole sequence vs split layout)
    from policyopt.data.preference import pair_batch

    b = pair_batch(test_table, np.arange(4))
    with torch.no_grad():
        r_c, _, _ = trainer.pair_scores(b)
    texts = tok.batch_decode([ids[m].tolist() for ids, m in zip(b.chosen_ids, b.chosen_mask)], skip_special_tokens=True)
    prompts = tok.batch_decode([ids[m].tolist() for ids, m in zip(b.prompt_ids, b.prompt_mask)],
                               skip_special_tokens=True)
    np.testing.assert_allclose(fn(prompts, texts), r_c[0].numpy(), atol=1e-4)


def test_ensemble_strength_finds_flipped_labels_and_treatment_helps(test_table):
    records, _ = synthetic_pairs(build(SyntheticConfig, {**DATA, "num_prompts": 480, "flip_rate": 0.3}))
    ensemble, table, _ = trained(records, k=3, seed=10)
    mu, std = ensemble.strength(table, out_of_bag=True)
    assert mu.shape == std.shape == (480,)
    suspected = mu < 0
    assert suspected[records.flipped].mean() > 0.6 and suspected[~records.flipped].mean() < 0.25
    plain, _, _ = trained(records)
    treated, _, _ = trained(records, strength=mu)
    acc = [pair_accuracy(*(r[0] for r in m.table_rewards(test_table))) for m in (plain, treated)]
    assert acc[1] >= acc[0] - 0.02, acc


def _labelled(records, tok, labels):
    from policyopt.data.preference import pair_batch

    b = pair_batch(PairTable.from_records(records, tok), np.arange(len(records)))
    return LabelledResponses(b.prompt_ids, b.prompt_mask, b.chosen_ids, b.chosen_mask,
                             torch.as_tensor(labels, dtype=torch.float32), b.index, len(records))


@pytest.mark.parametrize("objective", ["binary", "cost"])
def test_binary_feedback_and_cost_models_learn_their_labels(tok, objective):
    records, truth = synthetic_pairs(build(SyntheticConfig, {**DATA, "num_prompts": 256}))
    good = truth.reward(records.chosen) > 0                        # like = positive true reward
    labels = good if objective == "binary" else ~good              # unsafe = negative true reward
    batch = _labelled(records, tok, labels)
    trainer = RewardModelTrainer(build(RewardModelConfig, {"objective": objective, "learning_rate": 3e-3}),
                                 [RewardModel(body(0)[0])], len(records))
    for _ in range(60):
        metrics = trainer.update(batch)
    assert metrics["rewards/label_accuracy"] > 0.85
    with pytest.raises(TypeError, match="PreferencePairs"):
        trainer.update(PreferenceCollector(PairTable.from_records(records, tok), None, 8).collect())


def test_state_dict_round_trip(tok):
    records, _ = synthetic_pairs(build(SyntheticConfig, {**DATA, "num_prompts": 64}))
    a, table, _ = trained(records, k=2, updates=3)
    b, _, _ = trained(records, k=2, updates=0, seed=7)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.table_rewards(table)[0], b.table_rewards(table)[0])


def test_reward_model_cli_run(tmp_path, tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    from policyopt.app.run import train

    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    config = {"algo": "reward_model", "seed": 0,
              "trainer": {"total_steps": 60 * 32, "eval_every_steps": 0, "progress": "none", "tensorboard": False},
              "reward_model": {"backbone": str(tmp_path / "m"), "learning_rate": 3e-3, "eval_pairs": 128,
                               "data": {"batch_size": 32, "synthetic": {**DATA, "num_prompts": 480}}}}
    _, record = train(config, run_dir=tmp_path / "run")
    assert record["eval/pair_accuracy"] > 0.85, record


def test_contrastive_auxiliary_loss_uses_two_dropout_views(tok):
    from transformers import LlamaConfig, LlamaModel

    records, _ = synthetic_pairs(build(SyntheticConfig, {**DATA, "num_prompts": 64}))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32,
                      pad_token_id=tok.pad_token_id, attention_dropout=0.2)
    torch.manual_seed(0)
    table = PairTable.from_records(records, tok)
    batch = PreferenceCollector(table, None, 32).collect()
    losses = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(1)
        trainer = RewardModelTrainer(build(RewardModelConfig, {"contrastive_weight": weight}),
                                     [RewardModel(LlamaModel(cfg))], len(table))
        trainer.members.train()
        torch.manual_seed(2)
        losses[weight] = float(trainer.losses(batch)[0].detach())
    # InfoNCE over 32 pairs is about log(32) when the views are not yet aligned
    assert 1.0 < losses[1.0] - losses[0.0] < 2 * np.log(32)
