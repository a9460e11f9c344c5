"""Chunked log-probs equal the unchunked full-logits computation (values, entropy, gradients)."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from policyopt.lm.logprobs import (
    completion_logprobs,
    head_logprobs,
    left_pad,
    position_ids,
    precompute_reference_logprobs,
    reference_logprobs,
    sequence_logprob,
)

VOCAB, PAD = 102, 0


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, pad_token_id=PAD)
    return LlamaForCausalLM(cfg).eval()


def batch():
    prompt_ids, prompt_mask = left_pad([[5, 6, 7], [8, 9, 10, 11, 12], [13]], PAD)
    completions = [[20, 21, 22, 23], [24], [25, 26]]
    completion_ids = torch.full((3, 4), PAD)
    completion_mask = torch.zeros((3, 4), dtype=torch.bool)
    for i, c in enumerate(completions):
        completion_ids[i, : len(c)] = torch.tensor(c)
        completion_mask[i, : len(c)] = True
    return prompt_ids, prompt_mask, completion_ids, completion_mask


def naive(model, prompt_ids, prompt_mask, completion_ids, completion_mask):
    """One unpadded forward per row over the full logits: the definition."""
    lps, ents = torch.zeros(completion_ids.shape), torch.zeros(completion_ids.shape)
    for i in range(prompt_ids.shape[0]):
        p, c = prompt_ids[i][prompt_mask[i]], completion_ids[i][completion_mask[i]]
        logp = model(input_ids=torch.cat([p, c])[None]).logits[0].log_softmax(-1)[len(p) - 1: -1]
        lps[i, : len(c)] = logp.gather(-1, c[:, None]).squeeze(-1)
        ents[i, : len(c)] = -(logp.exp() * logp).sum(-1)
    return lps, ents


def test_left_pad_and_positions():
    ids, mask = left_pad([[1, 2, 3], [4]], PAD)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]] and mask.tolist() == [[True] * 3, [False, False, True]]
    assert position_ids(mask).tolist() == [[0, 1, 2], [0, 0, 0]]
    with pytest.raises(ValueError, match="empty"):
        left_pad([[1], []], PAD)


@pytest.mark.parametrize("row_chunk,token_chunk", [(None, 1024), (1, 1), (2, 3)])
def test_chunked_equals_unpadded_full_logits(row_chunk, token_chunk):
    model = tiny_llama()
    data = batch()
    with torch.no_grad():
        out = completion_logprobs(model, *data, with_entropy=True, row_chunk=row_chunk, token_chunk=token_chunk)
        ref_lp, ref_ent = naive(model, *data)
    torch.testing.assert_close(out.logprobs, ref_lp, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.entropy, ref_ent, atol=1e-5, rtol=0)
    assert (out.logprobs[~data[3]] == 0).all()
    totals = sequence_logprob(out.logprobs, data[3])
    torch.testing.assert_close(totals, ref_lp.sum(-1), atol=1e-5, rtol=0)


def test_gradients_through_checkpointed_chunks_equal_unchunked():
    data = batch()
    grads = []
    for row_chunk, token_chunk in [(None, 1024), (1, 2)]:
        model = tiny_llama()
        lp = completion_logprobs(model, *data, row_chunk=row_chunk, token_chunk=token_chunk).logprobs
        lp.sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_temperature_scales_logits_gpt2():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2, n_positions=64,
                                        bos_token_id=1, eos_token_id=2)).eval()
    data = batch()
    with torch.no_grad():
        hot = completion_logprobs(model, *data, temperature=2.0).logprobs
        full = torch.cat([data[0], data[2]], 1)
        mask = torch.cat([data[1], data[3]], 1)
        logits = model(input_ids=full, attention_mask=mask.long(), position_ids=position_ids(mask)).logits
        logp = (logits[:, 4:-1] / 2.0).log_softmax(-1).gather(-1, data[2][..., None]).squeeze(-1)
    torch.testing.assert_close(hot, logp * data[3], atol=1e-5, rtol=0)


def test_reference_logprobs_without_grad_and_precompute():
    model, ref = tiny_llama(0), tiny_llama(1)
    data = batch()
    with torch.no_grad():
        expected = completion_logprobs(ref, *data).logprobs
    got = reference_logprobs(ref, *data, token_chunk=2)
    assert not got.requires_grad
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    stored = list(precompute_reference_logprobs(ref, [data, data]))
    assert len(stored) == 2 and torch.equal(stored[0], stored[1])
    assert not torch.allclose(completion_logprobs(model, *data).logprobs, expected)


def test_bad_batches_name_the_problem():
    model = tiny_llama()
    p, pm, c, cm = batch()
    with pytest.raises(ValueError, match="left-padded"):
        completion_logprobs(model, p.flip(1), pm.flip(1), c, cm)
    with pytest.raises(ValueError, match="batch size"):
        completion_logprobs(model, p, pm, c[:2], cm[:2])
    with pytest.raises(ValueError, match="temperature"):
        completion_logprobs(model, p, pm, c, cm, temperature=0.0)


@pytest.mark.parametrize("token_chunk", [1, 4, 7, 64])  # 7 > T, 64 > every masked position together
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_head_logprobs_equals_full_log_softmax_gather_for_any_token_chunk(token_chunk, temperature):
    torch.manual_seed(0)
    rows, length, width = 3, 6, 16
    head = torch.nn.Linear(width, VOCAB, bias=False)
    hidden = torch.randn(rows, length, width, requires_grad=True)
    targets = torch.randint(0, VOCAB, (rows, length))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)

    logp = (head(hidden) / temperature).log_softmax(-1)  # the definition: full [R, T, V] logits
    want_lp = logp.gather(-1, targets[..., None]).squeeze(-1) * mask
    want_ent = -(logp.exp() * logp).sum(-1) * mask
    (want_grad,) = torch.autograd.grad((want_lp + want_ent).sum(), hidden)

    out = head_logprobs(head, hidden, targets, mask, token_chunk=token_chunk, temperature=temperature,
                        with_entropy=True)
    assert out.logprobs.shape == out.entropy.shape == (rows, length)
    torch.testing.assert_close(out.logprobs, want_lp, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.entropy, want_ent, rtol=0, atol=1e-5)
    assert not out.logprobs[~mask].any() and not out.entropy[~mask].any()
    (grad,) = torch.autograd.grad((out.logprobs + out.entropy).sum(), hidden)  # through checkpointed chunks
    torch.testing.assert_close(grad, want_grad, rtol=0, atol=1e-5)

    # already-gathered positions (no mask), as DPO's packed pass calls it: [M, H] -> [M]
    flat = head_logprobs(head, hidden.detach()[mask], targets[mask], token_chunk=token_chunk,
                         temperature=temperature)
    assert flat.entropy is None
    torch.testing.assert_close(flat.logprobs, want_lp[mask], rtol=0, atol=1e-5)
