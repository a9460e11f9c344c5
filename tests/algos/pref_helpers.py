"""Shared fixtures of the preference tests: a tiny Llama SFT'd to write behaviour-policy completions.

The starting policy must already write valid completions (short strings over the synthetic alphabet)
so that preference learning, which only moves probability between chosen and rejected answers, has
something to sharpen: the model is SFT'd for ``SFT_UPDATES`` updates on (task prompt, behaviour
completion) pairs, where the behaviour distribution may be skewed (``behaviour=``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

SFT_UPDATES = 60
SYNTHETIC: dict[str, Any] = {"num_prompts": 256, "task": "addition", "task_params": {"max_digits": 2},
                             "alphabet": "abcdef", "min_len": 2, "max_len": 3}


def tiny_pref_model(out: Path, behaviour: tuple[float, ...] = (), updates: int = SFT_UPDATES, seed: int = 0) -> Path:
    """Build, SFT and save the tiny model (deterministic with 1 torch thread); returns ``out``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from policyopt.algos.sft import SFT, SFTConfig
    from policyopt.core.config import build
    from policyopt.data.text import SFTDataConfig
    from policyopt.lm.synthetic_preference import SyntheticConfig, behaviour_completions, synthetic_prompts
    from policyopt.lm.tokenizer import build_char_tokenizer
    from policyopt.runtime.lm_collectors import SFTCollector

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tok = build_char_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32,
                      tie_word_embeddings=True, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    syn = build(SyntheticConfig, {**SYNTHETIC, "num_prompts": 1024, "behaviour": behaviour, "seed": 99})
    prompts = synthetic_prompts(syn)
    texts = behaviour_completions(syn, len(prompts), np.random.default_rng(seed))
    collector = SFTCollector(list(zip(prompts, texts)), tok, SFTDataConfig(batch_size=64, seed=seed))
    algo = SFT(model, SFTConfig(learning_rate=5e-3, warmup_updates=10))
    for _ in range(updates):
        algo.update(collector.collect())
    model.save_pretrained(out)
    tok.save_pretrained(out)
    torch.set_num_threads(threads)
    return out


def pref_run_config(algo: str, model_dir: Path, section: dict[str, Any] | None = None, steps: int = 20,
                    batch: int = 32, synthetic: dict[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:
    """A small run config for an offline preference algorithm on the tiny model."""
    section = dict(section or {})
    data = {"batch_size": batch, "synthetic": {**SYNTHETIC, **(synthetic or {})}, **section.pop("data", {})}
    return {"algo": algo, "seed": seed, "model": {"path": str(model_dir)},
            "trainer": {"total_steps": steps * batch, "eval_every_steps": 0, "progress": "none",
                        "tensorboard": False, "torch_threads": 1},
            algo: {"data": data, "eval": {"prompts": 48, "samples_per_prompt": 4},
                   **section}}
