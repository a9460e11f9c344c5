"""SFT: completion-only loss (hand-checked masking), learning on a tiny problem, exact resume."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from policyopt.algos.sft import SFT, SFTConfig, completion_nll
from policyopt.core.config import ConfigError, build
from policyopt.data.text import SFTBatch, SFTDataConfig
from policyopt.lm.tokenizer import build_char_tokenizer
from policyopt.runtime.lm_collectors import SFTCollector


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


def tiny_model(seed: int = 0, vocab: int = 102) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg)


PAIRS = [(f"{a}+{b}=", f"<answer>{a + b}</answer>") for a in range(6) for b in range(6)]


def test_collector_masks_exactly_the_completion_tokens(tok):
    col = SFTCollector([("12+3=", "<answer>15</answer>"), ("1+1=", "<answer>2</answer>")], tok,
                       SFTDataConfig(batch_size=2, seed=0))
    batch = col.collect()
    rows = {tok.decode(r[m.bool()]): (r, m, a) for r, m, a in
            zip(batch.input_ids, batch.loss_mask, batch.attention_mask)}
    # hand-written expectation for "12+3=" -> "<answer>15</answer>" + EOS (no padding: longest row)
    ids, mask, attn = rows["<answer>15</answer><eos>"]
    assert tok.convert_ids_to_tokens(ids.tolist()) == ["<bos>", "1", "2", "+", "3", "=", "<answer>", "1", "5",
                                                       "</answer>", "<eos>"]
    assert mask.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert attn.tolist() == [1] * 11
    ids, mask, attn = rows["<answer>2</answer><eos>"]
    assert tok.convert_ids_to_tokens(ids.tolist()) == ["<bos>", "1", "+", "1", "=", "<answer>", "2", "</answer>",
                                                       "<eos>", "<pad>", "<pad>"]
    assert mask.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0]
    assert attn.tolist() == [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    assert batch.num_steps == 2


def test_loss_ignores_prompt_and_padding_tokens_hand_checked():
    model = tiny_model()
    ids = torch.tensor([[1, 10, 11, 12, 4, 20, 5, 2, 0, 0],
                        [1, 13, 4, 21, 22, 5, 2, 0, 0, 0]])
    attn = (torch.arange(10) < torch.tensor([[8], [7]])).long()
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[0, 4:8] = True
    mask[1, 2:7] = True
    batch = SFTBatch(ids, attn, mask, num_steps=2)
    loss, n = completion_nll(model, batch)
    # by hand: position t predicts token t+1; only targets inside the completion count
    logp = torch.log_softmax(model(input_ids=ids, attention_mask=attn).logits, -1)
    terms = [-logp[0, t - 1, ids[0, t]] for t in range(4, 8)] + [-logp[1, t - 1, ids[1, t]] for t in range(2, 7)]
    assert n == 9
    torch.testing.assert_close(loss, torch.stack(terms).mean(), rtol=1e-5, atol=1e-6)
    # changing prompt tokens changes the context, but swapping a PAD/ignored target never changes the loss
    ids2 = ids.clone()
    ids2[0, 8:] = 77  # padding region (attention 0, not a target of the loss)
    loss2, _ = completion_nll(model, SFTBatch(ids2, attn, mask, 2))
    torch.testing.assert_close(loss, loss2)
    # sequence reduction: mean of the per-sequence means
    seq, _ = completion_nll(model, batch, "sequence")
    want = (torch.stack(terms[:4]).mean() + torch.stack(terms[4:]).mean()) / 2
    torch.testing.assert_close(seq, want, rtol=1e-5, atol=1e-6)


def test_prompt_tokens_get_no_gradient_signal():
    """Prompt-only targets contribute nothing: the gradient equals that of a completion-only loss."""
    model = tiny_model()
    ids = torch.tensor([[1, 10, 11, 12, 4, 20, 5, 2]])
    attn = torch.ones_like(ids)
    mask = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]], dtype=torch.bool)
    loss, _ = completion_nll(model, SFTBatch(ids, attn, mask, 1))
    loss.backward()
    g1 = model.model.embed_tokens.weight.grad.clone()
    model.zero_grad()
    labels = ids.clone()
    labels[~mask] = -100  # the HF convention, computed independently by transformers
    model(input_ids=ids, attention_mask=attn, labels=labels).loss.backward()
    torch.testing.assert_close(g1, model.model.embed_tokens.weight.grad, rtol=1e-4, atol=1e-6)


def test_sft_learns_tiny_problem(tok):
    torch.manual_seed(0)
    model = tiny_model()
    col = SFTCollector(PAIRS, tok, SFTDataConfig(batch_size=36, seed=0))
    algo = SFT(model, SFTConfig(learning_rate=3e-3, warmup_updates=5))
    losses = [algo.update(col.collect())["loss/sft"] for _ in range(80)]
    assert losses[-1] < 0.35 * losses[0], (losses[0], losses[-1])
    assert algo.num_updates == 80


def test_collector_epochs_and_exact_resume(tok):
    cfg = SFTDataConfig(batch_size=10, seed=3)
    col = SFTCollector(PAIRS, tok, cfg)
    for _ in range(3):
        col.collect()  # 30 of 36 pairs
    assert col.state_dict() == {"seed": 3, "epoch": 0, "position": 30, "num_examples": 36}
    b = col.collect()  # 6 from epoch 0 + 4 from epoch 1
    assert col.state_dict()["epoch"] == 1 and col.state_dict()["position"] == 4 and b.num_steps == 10
    state = col.state_dict()
    expect = [col.collect().input_ids for _ in range(4)]
    again = SFTCollector(PAIRS, tok, cfg)
    again.load_state_dict(state)
    for want in expect:
        assert torch.equal(again.collect().input_ids, want)
    with pytest.raises(ValueError, match="seed"):
        SFTCollector(PAIRS, tok, SFTDataConfig(batch_size=10, seed=4)).load_state_dict(state)


def test_each_epoch_visits_every_pair_once(tok):
    col = SFTCollector(PAIRS, tok, SFTDataConfig(batch_size=12, seed=1))
    texts = [tok.decode(r[: int(a.sum())]) for _ in range(3) for r, a in
             zip(*(lambda b: (b.input_ids, b.attention_mask))(col.collect()))]
    assert sorted(texts) == sorted(f"<bos>{p}{c}<eos>" for p, c in PAIRS)


def test_algorithm_state_round_trip(tok):
    col = SFTCollector(PAIRS, tok, SFTDataConfig(batch_size=12, seed=0))
    algo = SFT(tiny_model(0), SFTConfig(learning_rate=1e-3, warmup_updates=3, total_updates=20))
    for _ in range(4):
        algo.update(col.collect())
    state = algo.state_dict()
    assert set(state) == {"model", "optimizer", "num_updates"} and state["num_updates"] == 4
    assert all(isinstance(k, str) for k in state["optimizer"]["state"])
    clone = SFT(tiny_model(1), SFTConfig(learning_rate=1e-3, warmup_updates=3, total_updates=20))
    clone.load_state_dict(state)
    batch = col.collect()
    m1, m2 = algo.update(batch), clone.update(batch)
    assert m1 == m2
    for (k, a), b in zip(algo.model.state_dict().items(), clone.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_schedule_and_config_errors(tok):
    algo = SFT(tiny_model(), SFTConfig(learning_rate=1.0, warmup_updates=4, total_updates=14, min_lr_ratio=0.1))
    assert [algo.learning_rate(u) for u in (0, 3)] == [0.25, 1.0]
    assert algo.learning_rate(9) == pytest.approx(0.55) and algo.learning_rate(14) == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="sft.learning_rate"):
        build(SFTConfig, {"learning_rate": -1}, "sft")
    with pytest.raises(ConfigError, match="sft.batch_size: unknown key"):
        build(SFTConfig, {"batch_size": 3}, "sft")
    with pytest.raises(ValueError, match="max_length=8"):
        SFTCollector([("123456789", "x")], tok, SFTDataConfig(max_length=8))
    with pytest.raises(TypeError, match="pair 0"):
        SFTCollector([("only prompt",)], tok)


def test_runs_through_trainer_and_resumes_exactly(tok, tmp_path):
    from policyopt.runtime.trainer import Trainer, TrainerConfig

    def make(run_dir):
        algo = SFT(tiny_model(0), SFTConfig(learning_rate=3e-3))
        col = SFTCollector(PAIRS, tok, SFTDataConfig(batch_size=8, seed=0))
        cfg = TrainerConfig(total_steps=80, eval_every_steps=0, checkpoint_every_steps=40, progress="off",
                            tensorboard=False)
        return Trainer(algo, col, cfg, run_dir), algo

    full, algo_full = make(tmp_path / "full")
    record = full.run()
    assert full.step == 80 and full.updates == 10 and "loss/sft" in record
    part, _ = make(tmp_path / "part")
    part.run(until_step=40)
    resumed, algo_resumed = make(tmp_path / "part")
    assert resumed.restore() == 40
    resumed.run()
    for (k, a), b in zip(algo_full.model.state_dict().items(), algo_resumed.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_length_grouping_cuts_padding_and_keeps_epochs(tok):
    pairs = [("1+1=", "<answer>2</answer>")] * 30 + [("sort:10,20,30,40,50=", "<answer>10,20,30,40,50</answer>")] * 30
    plain = SFTCollector(pairs, tok, SFTDataConfig(batch_size=10, seed=0))
    grouped = SFTCollector(pairs, tok, SFTDataConfig(batch_size=10, seed=0, length_grouping=6))
    width_plain = sum(plain.collect().input_ids.shape[1] for _ in range(6))
    batches = [grouped.collect() for _ in range(6)]
    assert sum(b.input_ids.shape[1] for b in batches) < width_plain
    assert all(len(set(b.attention_mask.sum(1).tolist())) == 1 for b in batches)  # one length per batch
    assert sorted(int(n) for b in batches for n in b.attention_mask.sum(1)) == sorted(plain.lengths.tolist())
