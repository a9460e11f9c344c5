"""Shared fixtures of the LM RL tests: a tiny Llama, SFT'd briefly on small sorting problems.

The model (~90k parameters, the project's character tokenizer) is trained for ``SFT_UPDATES``
updates, enough to get the answer format right and the sorting partly right, so that RL has a
clear, fast-to-measure margin: its sampled (temperature 1) held-out reward.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

TASKS = {"sorting": 600}
TASK_PARAMS = {"sorting": {"min_len": 2, "max_len": 3, "max_value": 9}}
SFT_UPDATES = 110


def tiny_sft_model(out: Path, updates: int = SFT_UPDATES, seed: int = 0) -> Path:
    """Build, SFT and save the tiny model to ``out`` (deterministic with 1 torch thread)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from policyopt.algos.sft import SFT, SFTConfig
    from policyopt.data.text import SFTDataConfig
    from policyopt.lm.tasks import generate_mixture
    from policyopt.lm.tokenizer import build_char_tokenizer
    from policyopt.runtime.lm_collectors import SFTCollector

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tok = build_char_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                      tie_word_embeddings=True, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    data = generate_mixture({"sorting": 900}, "train", seed, TASK_PARAMS)
    collector = SFTCollector(data, tok, SFTDataConfig(batch_size=64, seed=seed))
    algo = SFT(model, SFTConfig(learning_rate=3e-3, warmup_updates=20))
    for _ in range(updates):
        algo.update(collector.collect())
    model.save_pretrained(out)
    tok.save_pretrained(out)
    torch.set_num_threads(threads)
    return out


def run_config(algo: str, model_dir: Path, section: dict[str, Any] | None = None,
               steps: int = 15, prompts: int = 8, group: int = 8, seed: int = 0,
               model: dict[str, Any] | None = None, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """A small run config (``steps`` updates of ``prompts`` x ``group`` completions) on the tiny model."""
    section = dict(section or {})
    collect = {"prompts_per_step": prompts, "completions_per_prompt": group, "max_new_tokens": 12,
               **section.pop("collect", {})}
    per_step = prompts * group
    return {"algo": algo, "seed": seed,
            "model": {"path": str(model_dir), **(model or {})},
            "data": {"tasks": TASKS, "task_params": TASK_PARAMS, "eval_prompts": 60, "eval_samples": 4,
                     **(data or {})},
            "reward": {"kind": "task"},
            "trainer": {"total_steps": steps * per_step, "eval_every_steps": 0, "progress": "none",
                        "tensorboard": False, "torch_threads": 1},
            algo: {"collect": collect, "learning_rate": 2e-3, **section}}


def cached_tiny_model() -> Path:
    """The tiny SFT'd model, built once per machine (keyed by this file's source and torch version)."""
    key = hashlib.sha256(Path(__file__).read_bytes() + torch.__version__.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"policyopt-test-tiny-lm-{key}"
    if (path / "config.json").is_file():
        return path
    tmp = Path(tempfile.mkdtemp(prefix=path.name + "-tmp-"))
    tiny_sft_model(tmp)
    try:
        os.replace(tmp, path)  # atomic; a concurrent builder may have won the race
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
