"""Sampler: log-probs match the training forward pass, seeding, top-k/top-p support, EOS and stop strings."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from policyopt.core.config import ConfigError, build
from policyopt.lm.logprobs import completion_logprobs
from policyopt.lm.sampling import (
    FINISH_EOS,
    FINISH_LENGTH,
    FINISH_STOP,
    SamplingConfig,
    StopStrings,
    fused_supported,
    process_logits,
    sample,
    token_texts,
)
from policyopt.lm.tokenizer import build_char_tokenizer

VOCAB = 102
PAD = 0


def tiny_model(kind: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    if kind == "llama":
        cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, pad_token_id=PAD)
        model = LlamaForCausalLM(cfg)
    elif kind == "mistral":
        from transformers import MistralConfig, MistralForCausalLM

        cfg = MistralConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=1, head_dim=32, sliding_window=None,
                            pad_token_id=PAD)
        model = MistralForCausalLM(cfg)
    elif kind == "qwen2":
        cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, pad_token_id=PAD)
        model = Qwen2ForCausalLM(cfg)
    else:
        cfg = GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=128,
                         bos_token_id=1, eos_token_id=2, pad_token_id=PAD)
        model = GPT2LMHeadModel(cfg)
    with torch.no_grad():  # sharper distributions than the default init, so sampling is not uniform
        model.get_output_embeddings().weight.mul_(40.0)
    return model.eval()


PROMPTS = [[5, 6, 7], [8, 9, 10, 11, 12, 13, 14], [15], [16, 17, 18, 19]]
EOS_SET = list(range(60, 80))  # 20 of 102 ids: some rows stop early, others run to the limit


@pytest.mark.parametrize("kind,backend", [("gpt2", "hf"), ("llama", "hf"), ("llama", "fused"),
                                          ("qwen2", "hf"), ("qwen2", "fused"), ("mistral", "fused")])
def test_sampled_logprobs_equal_training_forward(kind, backend):
    model = tiny_model(kind)
    cfg = SamplingConfig(max_new_tokens=10, samples_per_prompt=2, backend=backend, temperature=0.7)
    free = sample(model, PROMPTS, cfg, generator=torch.Generator().manual_seed(3), pad_token_id=PAD)
    eos = free.completion_ids[0, 2].item()  # row 0 will stop at step <= 2: EOS mid-batch
    s = sample(model, PROMPTS, cfg, generator=torch.Generator().manual_seed(3), pad_token_id=PAD,
               eos_token_ids=[eos])
    lengths = s.completion_lengths
    # left padding with different prompt lengths, and EOS in the middle of the batch
    assert s.prompt_mask.sum(1).tolist() == [3, 3, 7, 7, 1, 1, 4, 4]
    assert (lengths < 10).any() and (lengths == 10).any()
    assert set(s.finish_reason[lengths < 10].tolist()) == {FINISH_EOS}
    assert torch.isin(s.completion_ids[s.completion_mask], torch.arange(VOCAB)).all()
    assert (s.completion_ids[~s.completion_mask] == PAD).all()
    with torch.no_grad():
        raw = completion_logprobs(model, s.prompt_ids, s.prompt_mask, s.completion_ids, s.completion_mask)
        tempered = completion_logprobs(model, s.prompt_ids, s.prompt_mask, s.completion_ids, s.completion_mask,
                                       temperature=0.7)
    # 5e-5, not 1e-5: the sampler's incremental (KV-cache) forward and the full training forward sum in
    # other orders, and which float32 matmul kernel a shape gets (so the rounding) differs between x86
    # CPUs; on one AMD EPYC, mistral-fused differed by 1.07e-5 in one of 80 log-probs. A real mismatch
    # (wrong position, mask or temperature) is off by > 1e-2.
    torch.testing.assert_close(raw.logprobs, s.raw_logprobs, atol=5e-5, rtol=0)
    # without top-k/top-p, the behaviour log-probs are the tempered model's
    torch.testing.assert_close(tempered.logprobs, s.logprobs, atol=5e-5, rtol=0)
    assert (s.raw_logprobs[~s.completion_mask] == 0).all()
    assert s.input_ids.shape == s.attention_mask.shape == (8, 7 + 10)
    assert s.attention_mask.sum().item() == s.prompt_mask.sum().item() + s.num_tokens


def test_fused_and_hf_backends_agree():
    model = tiny_model("llama", seed=1)
    cfg = SamplingConfig(max_new_tokens=12, samples_per_prompt=3)
    a = sample(model, PROMPTS, cfg, generator=torch.Generator().manual_seed(0), pad_token_id=PAD)
    b = sample(model, PROMPTS, SamplingConfig(max_new_tokens=12, samples_per_prompt=3, backend="hf"),
               generator=torch.Generator().manual_seed(0), pad_token_id=PAD)
    assert torch.equal(a.completion_ids, b.completion_ids)
    torch.testing.assert_close(a.raw_logprobs, b.raw_logprobs, atol=1e-5, rtol=0)


def test_same_seed_same_samples_different_seed_different():
    model = tiny_model("llama")
    cfg = SamplingConfig(max_new_tokens=16, samples_per_prompt=2)

    def run(seed):
        return sample(model, PROMPTS, cfg, generator=torch.Generator().manual_seed(seed), pad_token_id=PAD)

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a.completion_ids, b.completion_ids) and torch.equal(a.logprobs, b.logprobs)
    assert not torch.equal(a.completion_ids, c.completion_ids)
    # the two samples of one prompt differ too (the prefill is shared, the randomness is not)
    assert not torch.equal(a.completion_ids[0::2], a.completion_ids[1::2])


def test_greedy_is_argmax_and_needs_no_generator():
    model = tiny_model("qwen2")
    s = sample(model, PROMPTS, SamplingConfig(max_new_tokens=5, temperature=0.0), generator=None, pad_token_id=PAD)
    assert (s.logprobs == 0).all()
    with torch.no_grad():
        out = model(input_ids=torch.tensor([PROMPTS[1]])).logits[0, -1]
    assert s.completion_ids[1, 0].item() == int(out.argmax())
    with pytest.raises(ValueError, match="Generator"):
        sample(model, PROMPTS, SamplingConfig(max_new_tokens=2), generator=None, pad_token_id=PAD)


def test_top_k_top_p_restrict_support():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0], [0.0, 0.0, 5.0, 0.0, 0.0]])
    kept = process_logits(logits, 1.0, 2, 1.0).isfinite()
    assert kept.tolist() == [[True, True, False, False, False], [True, True, True, True, True]]  # ties kept
    probs = logits.softmax(-1)  # row 0: .636 .234 .086 .032 .012
    kept = process_logits(logits, 1.0, 0, 0.9).isfinite()
    assert kept[0].tolist() == [True, True, True, False, False]  # .636 + .234 < .9 -> the third is needed
    assert kept[1].tolist() == [False, False, True, False, False]  # one token already has p >= .9
    assert probs[1, 2] > 0.9
    assert process_logits(logits, 1.0, 0, 0.85).isfinite()[0].tolist() == [True, True, False, False, False]
    # sampled tokens stay inside the support
    model = tiny_model("llama")
    for cfg, check in [
        (SamplingConfig(max_new_tokens=8, top_k=3, samples_per_prompt=4), lambda lg: process_logits(lg, 1.0, 3, 1.0)),
        (SamplingConfig(max_new_tokens=8, top_p=0.5, samples_per_prompt=4), lambda lg: process_logits(lg, 1, 0, .5)),
    ]:
        s = sample(model, PROMPTS, cfg, generator=torch.Generator().manual_seed(0), pad_token_id=PAD)
        with torch.no_grad():
            full = torch.cat([s.prompt_ids, s.completion_ids], 1)
            mask = torch.cat([s.prompt_mask, s.completion_mask], 1)
            pos = (mask.long().cumsum(1) - 1).clamp(min=0)
            lg = model(input_ids=full, attention_mask=mask.long(), position_ids=pos).logits
        lg = lg[:, s.prompt_ids.shape[1] - 1: -1]
        allowed = check(lg.reshape(-1, VOCAB)).isfinite().view(*s.completion_ids.shape, VOCAB)
        hit = allowed.gather(-1, s.completion_ids[..., None]).squeeze(-1)
        assert hit[s.completion_mask].all()
        assert (s.logprobs[s.completion_mask] >= s.raw_logprobs[s.completion_mask] - 1e-6).all()


def test_stop_strings_stop_on_token_ids():
    tok = build_char_tokenizer()
    texts = token_texts(tok)
    assert texts[tok.convert_tokens_to_ids("7")] == "7" and texts[tok.convert_tokens_to_ids("<answer>")] == "<answer>"
    stop = StopStrings(texts, ["ab", "</answer>"])
    ids = {c: tok.convert_tokens_to_ids(c) for c in "xab"}
    seq = torch.tensor([[ids["x"], ids["a"], ids["a"], ids["b"], ids["x"]],
                        [ids["a"], tok.convert_tokens_to_ids("</answer>"), ids["x"], ids["x"], ids["x"]]])
    state = torch.zeros(2, dtype=torch.long)
    hits = []
    for t in range(seq.shape[1]):
        state, hit = stop.advance(state, seq[:, t])
        hits.append(hit.tolist())
    assert [h[0] for h in hits] == [False, False, False, True, False]
    assert [h[1] for h in hits] == [False, True, False, False, False]
    # multi-character tokens: a stop string completed in the middle of a token is seen
    multi = StopStrings(["", "xa", "by", "zzz"], ["ab"])
    state, hit = multi.advance(torch.tensor([0]), torch.tensor([1]))
    state, hit2 = multi.advance(state, torch.tensor([2]))
    assert not hit.item() and hit2.item()


def test_sampler_stops_at_stop_string():
    tok = build_char_tokenizer()
    model = tiny_model("llama", seed=2)
    base = sample(model, PROMPTS, SamplingConfig(max_new_tokens=20), generator=torch.Generator().manual_seed(5),
                  pad_token_id=PAD)
    # choose as stop string a character that the unconstrained run produced mid-way in row 0
    first = base.completion_ids[0, 3].item()
    text = tok.convert_ids_to_tokens(first)
    cfg = SamplingConfig(max_new_tokens=20, stop_strings=(text,))
    stop = StopStrings.from_tokenizer(tok, [text], vocab_size=VOCAB)
    s = sample(model, PROMPTS, cfg, generator=torch.Generator().manual_seed(5), pad_token_id=PAD, stop=stop)
    row = s.completion_ids[0][s.completion_mask[0]].tolist()
    assert row == base.completion_ids[0, : len(row)].tolist()
    assert row[-1] == first and first not in row[:-1] and len(row) <= 4
    assert s.finish_reason[0].item() == FINISH_STOP
    for r in range(s.completion_ids.shape[0]):  # every row: stopped at the first occurrence, or ran out
        ids = s.completion_ids[r][s.completion_mask[r]].tolist()
        assert (first not in ids[:-1]) and ((ids[-1] == first) == (s.finish_reason[r].item() == FINISH_STOP))
        if s.finish_reason[r].item() == FINISH_LENGTH:
            assert len(ids) == 20
    with pytest.raises(ValueError, match="StopStrings"):
        sample(model, PROMPTS, cfg, generator=torch.Generator().manual_seed(5), pad_token_id=PAD)


def test_compaction_does_not_change_results():
    model = tiny_model("llama", seed=3)
    kwargs = dict(generator=None, pad_token_id=PAD, eos_token_ids=EOS_SET)
    a = sample(model, PROMPTS * 3, SamplingConfig(max_new_tokens=12, temperature=0, compact_fraction=0.0), **kwargs)
    b = sample(model, PROMPTS * 3, SamplingConfig(max_new_tokens=12, temperature=0, compact_fraction=1.0), **kwargs)
    assert (a.completion_lengths < 12).any()
    assert torch.equal(a.completion_ids, b.completion_ids) and torch.equal(a.finish_reason, b.finish_reason)
    torch.testing.assert_close(a.raw_logprobs, b.raw_logprobs, atol=1e-5, rtol=0)


def test_stop_at_eos_false_forces_length_and_bad_input_errors():
    model = tiny_model("gpt2")
    s = sample(model, PROMPTS, SamplingConfig(max_new_tokens=6, stop_at_eos=False),
               generator=torch.Generator().manual_seed(0), pad_token_id=PAD, eos_token_ids=list(range(VOCAB)))
    assert s.completion_mask.all() and (s.finish_reason == FINISH_LENGTH).all()
    assert s.num_tokens == 24
    with pytest.raises(ValueError, match="empty"):
        sample(model, [[1, 2], []], SamplingConfig(), generator=torch.Generator(), pad_token_id=PAD)
    with pytest.raises(ValueError, match="fused"):
        sample(model, PROMPTS, SamplingConfig(max_new_tokens=4, backend="fused"), generator=torch.Generator(),
               pad_token_id=PAD)
    assert "gpt2" in fused_supported(model)
    with pytest.raises(ConfigError, match="top_p"):
        build(SamplingConfig, {"top_p": 0.0}, "sampling")
    with pytest.raises(ConfigError, match="max_new_tokens"):
        build(SamplingConfig, {"max_new_tokens": 0}, "sampling")


def test_model_left_in_training_mode_is_restored():
    model = tiny_model("gpt2").train()
    sample(model, PROMPTS, SamplingConfig(max_new_tokens=2), generator=torch.Generator().manual_seed(0),
           pad_token_id=PAD)
    assert model.training


def test_fused_weight_cache_follows_in_place_updates():
    model = tiny_model("llama", seed=5)
    cfg = SamplingConfig(max_new_tokens=6, temperature=0.0, backend="fused")
    before = sample(model, PROMPTS, cfg, generator=None, pad_token_id=PAD)
    with torch.no_grad():  # an optimizer step modifies parameters in place
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    after = sample(model, PROMPTS, cfg, generator=None, pad_token_id=PAD)
    hf = sample(model, PROMPTS, SamplingConfig(max_new_tokens=6, temperature=0.0, backend="hf"),
                generator=None, pad_token_id=PAD)
    assert torch.equal(after.completion_ids, hf.completion_ids)
    torch.testing.assert_close(after.raw_logprobs, hf.raw_logprobs, atol=1e-5, rtol=0)
    assert not torch.allclose(before.raw_logprobs, after.raw_logprobs)


def test_absolute_position_limit_is_a_clear_error():
    model = tiny_model("gpt2")  # n_positions = 128
    with pytest.raises(ValueError, match="n_positions"):
        sample(model, [[5] * 100], SamplingConfig(max_new_tokens=40), generator=torch.Generator(), pad_token_id=PAD)


def test_stop_automaton_matches_naive_text_search():
    import random

    rng = random.Random(0)
    vocab = ["".join(rng.choice("ab</>xz") for _ in range(rng.randint(1, 5))) for _ in range(60)] + ["", "zz"]
    stops = ["ab", "</a>", "bb", "x<"]
    table = StopStrings(vocab, stops)
    for _ in range(100):  # overlapping matches, matches across and inside tokens, empty tokens
        seq = [rng.randrange(len(vocab)) for _ in range(30)]
        text, owner = "", []
        for t, v in enumerate(seq):
            text += vocab[v]
            owner += [t] * len(vocab[v])
        expected = [False] * len(seq)
        for stop in stops:
            start = text.find(stop)
            while start >= 0:
                expected[owner[start + len(stop) - 1]] = True
                start = text.find(stop, start + 1)
        state, got = torch.zeros(1, dtype=torch.long), []
        for v in seq:
            state, hit = table.advance(state, torch.tensor([v]))
            got.append(bool(hit))
        assert got == expected
