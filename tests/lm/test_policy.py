"""LMPolicy: loading from a local directory, chat template, LoRA reference = adapters disabled, frozen reference."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from policyopt.lm.logprobs import completion_logprobs, reference_logprobs
from policyopt.lm.policy import LMPolicy, LoRAConfig
from policyopt.lm.sampling import SamplingConfig, fused_supported, sample
from policyopt.lm.tokenizer import build_char_tokenizer

TEMPLATE = ("{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}[assistant]{% endif %}")


def tiny_llama(tok, seed=0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    return LlamaForCausalLM(cfg).eval()


def test_from_pretrained_local_dir_sample_and_decode(tmp_path):
    tok = build_char_tokenizer()
    tiny_llama(tok).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    policy = LMPolicy.from_pretrained(tmp_path)
    assert policy.pad_token_id == tok.pad_token_id and tok.eos_token_id in policy.eos_token_ids
    ids = policy.encode_prompts(["12+3=", "7*8="])
    assert ids[0] == [tok.bos_token_id] + tok("12+3=", add_special_tokens=False).input_ids
    s = policy.sample(["12+3=", "7*8="], SamplingConfig(max_new_tokens=6, samples_per_prompt=2),
                      torch.Generator().manual_seed(0))
    texts = policy.decode(s)
    assert len(texts) == 4 and all(len(ids) <= 6 for ids in s.completion_lists())
    assert texts[0] == tok.decode(s.completion_lists()[0], skip_special_tokens=True)
    with torch.no_grad():
        lp = policy.logprobs(s).logprobs
    torch.testing.assert_close(lp, s.raw_logprobs, atol=1e-5, rtol=0)
    with pytest.raises(FileNotFoundError, match="config.json"):
        LMPolicy.from_pretrained(tmp_path / "missing")


def test_chat_template_and_token_prompts():
    tok = build_char_tokenizer()
    policy = LMPolicy(tiny_llama(tok), tok, chat_template=TEMPLATE)
    [chat] = policy.encode_prompts([[{"role": "user", "content": "2+2"}]])
    assert tok.decode(chat) == "[user]2+2\n[assistant]"
    assert policy.encode_prompts(["2+2"], chat=True) == [chat]
    assert policy.encode_prompts([[5, 6, 7], torch.tensor([8, 9])]) == [[5, 6, 7], [8, 9]]
    plain = LMPolicy(tiny_llama(tok), build_char_tokenizer())
    if not getattr(plain.tokenizer, "chat_template", None):
        with pytest.raises(ValueError, match="chat template"):
            plain.encode_prompts([[{"role": "user", "content": "x"}]])


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_lora_reference_is_base_with_adapters_disabled(arch):
    tok = build_char_tokenizer()
    if arch == "llama":
        base = tiny_llama(tok)
    else:
        torch.manual_seed(0)
        base = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).eval()
    untouched = type(base)(base.config).eval()
    untouched.load_state_dict(base.state_dict())
    n_base = sum(p.numel() for p in base.parameters())
    policy = LMPolicy(base, tok, lora=LoRAConfig(r=4))
    trainable = policy.trainable_parameters()
    assert policy.has_lora and 0 < sum(p.numel() for p in trainable) < n_base / 5
    assert all("lora_" in name for name in policy.state_dict())
    with torch.no_grad():  # make the adapters do something
        for p in trainable:
            p.add_(torch.randn_like(p) * 0.3)
    s = policy.sample(["1+1=", "99*9="], SamplingConfig(max_new_tokens=5, samples_per_prompt=2),
                      torch.Generator().manual_seed(1))
    batch = (s.prompt_ids, s.prompt_mask, s.completion_ids, s.completion_mask)
    with torch.no_grad():
        lp_policy = policy.logprobs(s).logprobs
        lp_base = completion_logprobs(untouched, *batch).logprobs
    lp_ref = reference_logprobs(policy, *batch)
    torch.testing.assert_close(lp_policy, s.raw_logprobs, atol=1e-5, rtol=0)  # sampler used the adapters
    torch.testing.assert_close(lp_ref, lp_base, atol=1e-5, rtol=0)  # reference = base weights
    assert (lp_policy - lp_ref).abs().max() > 1e-3
    with torch.no_grad():  # adapters are active again after the context
        torch.testing.assert_close(policy.logprobs(s).logprobs, lp_policy)
    with pytest.raises(ValueError, match="LoRA"):
        policy.freeze_reference()
    if arch == "llama":  # the fused sampler merges active adapters and drops disabled ones
        assert fused_supported(policy.model) is None
        cfg = SamplingConfig(max_new_tokens=5, backend="fused")
        ids = policy.encode_prompts(["1+1=", "99*9="])
        kwargs = dict(pad_token_id=tok.pad_token_id)
        with policy.reference() as ref:
            off = sample(ref, ids, cfg, generator=torch.Generator().manual_seed(2), **kwargs)
        plain = sample(untouched, ids, cfg, generator=torch.Generator().manual_seed(2), **kwargs)
        assert torch.equal(off.completion_ids, plain.completion_ids)
        torch.testing.assert_close(off.raw_logprobs, plain.raw_logprobs, atol=1e-5, rtol=0)
        on = sample(policy.model, ids, cfg, generator=torch.Generator().manual_seed(2), **kwargs)
        hf = sample(policy.model, ids, SamplingConfig(max_new_tokens=5, backend="hf"),
                    generator=torch.Generator().manual_seed(2), **kwargs)
        assert torch.equal(on.completion_ids, hf.completion_ids)
        torch.testing.assert_close(on.raw_logprobs, hf.raw_logprobs, atol=1e-5, rtol=0)


def test_frozen_reference_without_lora_and_state_round_trip():
    tok = build_char_tokenizer()
    policy = LMPolicy(tiny_llama(tok), tok)
    with pytest.raises(ValueError, match="no reference"), policy.reference():
        pass
    policy.freeze_reference()
    state = policy.state_dict()
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.mul_(1.5)
    with policy.reference() as ref:
        assert ref is policy.reference_model and ref is not policy.model
        assert not any(p.requires_grad for p in ref.parameters())
        torch.testing.assert_close(dict(ref.named_parameters())["lm_head.weight"], state["lm_head.weight"])
    policy.load_state_dict(state)
    torch.testing.assert_close(policy.model.lm_head.weight, state["lm_head.weight"])
    with pytest.raises(KeyError, match="missing"):
        policy.load_state_dict({})
    with pytest.raises(ValueError, match="reference_model"):
        LMPolicy(tiny_llama(tok), tok, lora=LoRAConfig(), reference_model=tiny_llama(tok))
    with pytest.raises(ValueError, match="match no module"):
        LMPolicy(tiny_llama(tok), tok, lora=LoRAConfig(target_modules=("nope",)))


def test_stop_strings_through_policy():
    tok = build_char_tokenizer()
    policy = LMPolicy(tiny_llama(tok, seed=4), tok)
    free = policy.sample(["3+4="], SamplingConfig(max_new_tokens=12), torch.Generator().manual_seed(2))
    text = policy.decode(free, skip_special_tokens=False)[0]
    stop = text[2:4]  # a two-character stop string that the free run contains
    s = policy.sample(["3+4="], SamplingConfig(max_new_tokens=12, stop_strings=(stop,)),
                      torch.Generator().manual_seed(2))
    out = policy.decode(s, skip_special_tokens=False)[0]
    last = tok.decode(s.completion_lists()[0][-1:])
    # the run stops at the first token that completes the stop string (possibly inside a tag token)
    assert stop in out and stop not in out[: len(out) - len(last)] and text.startswith(out)
    assert len(out) < len(text) and s.finish_reason[0].item() == 2
    assert policy.stop_strings((stop,)) is policy.stop_strings((stop,))


def test_training_step_on_samples_then_sampling_again_matches():
    tok = build_char_tokenizer()
    policy = LMPolicy(tiny_llama(tok, seed=6), tok)
    cfg = SamplingConfig(max_new_tokens=5, samples_per_prompt=2)
    s = policy.sample(["1+2=", "30*4="], cfg, torch.Generator().manual_seed(0))
    assert not s.completion_mask.is_inference() and not s.raw_logprobs.is_inference()
    opt = torch.optim.SGD(policy.trainable_parameters(), lr=0.5)
    loss = -(policy.logprobs(s).logprobs * s.completion_mask).sum()  # the samples feed autograd
    loss.backward()
    opt.step()
    s2 = policy.sample(["1+2=", "30*4="], cfg, torch.Generator().manual_seed(0))
    with torch.no_grad():  # the fused sampler saw the updated weights (its weight cache was invalidated)
        torch.testing.assert_close(policy.logprobs(s2).logprobs, s2.raw_logprobs, atol=1e-5, rtol=0)
