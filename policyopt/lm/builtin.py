"""The built-in model: a ~1.8M-parameter Llama-style causal LM with a character tokenizer.

It was trained by ``python -m policyopt.app.train_builtin`` (our SFT algorithm through the shared
Trainer) on a mix of the generated task families of :mod:`policyopt.lm.tasks`, to a useful but
imperfect held-out accuracy, so that RL has something to improve. The files live in
``policyopt/lm/builtin_model/`` (``config.json``, ``model.safetensors`` stored in bfloat16,
``tokenizer.json``, ``tokenizer_config.json``, ``accuracy.json``) and load with plain
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``::

    from policyopt.lm import load_builtin
    model, tokenizer = load_builtin()            # float32 on CPU, eval mode
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin_model"

ARCHITECTURE: dict[str, Any] = {
    "hidden_size": 192,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 256,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "attention_dropout": 0.0,
}
"""Shape of the built-in model (a ``LlamaConfig``); about 1.8M parameters with the 102-token vocab."""

TASK_PARAMS: dict[str, dict[str, Any]] = {
    "addition": {"max_digits": 3},
    "multiplication": {"max_digits": 2, "max_digits_b": 2},
    "sorting": {"min_len": 3, "max_len": 5, "max_value": 99},
    "equation": {"max_coef": 9, "max_x": 20, "max_b": 30},
    "countdown": {"count": 3, "max_number": 9, "max_target": 100},
}
"""Difficulty of each task family the built-in model was trained and evaluated on."""

EVAL_SEED = 1234
"""Seed of the held-out evaluation sample reported in ``accuracy.json`` and the docs."""

MAX_NEW_TOKENS = 24
"""Generation budget used for evaluation (the longest answer + tags + EOS fits easily)."""


def builtin_config(vocab_size: int, pad_token_id: int = 0, bos_token_id: int = 1, eos_token_id: int = 2):
    """The ``LlamaConfig`` of the built-in model (untrained)."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size, pad_token_id=pad_token_id, bos_token_id=bos_token_id,
                       eos_token_id=eos_token_id, **ARCHITECTURE)


def build_untrained(seed: int = 0):
    """(model, tokenizer) with freshly initialised weights (``torch.manual_seed(seed)`` before init)."""
    import torch
    from transformers import LlamaForCausalLM

    from policyopt.lm.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    config = builtin_config(len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                            tokenizer.eos_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_builtin(path: str | Path | None = None, dtype: Any = None) -> tuple[Any, Any]:
    """Load (model, tokenizer) from ``path`` (default: the shipped ``builtin_model/``), offline.

    ``dtype`` defaults to ``torch.float32`` (the weights are stored in bfloat16 and upcast; fp32 is
    much faster than bf16 on CPUs). The model is returned in eval mode.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path) if path is not None else BUILTIN_DIR
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no built-in model at {path}; train one with `python -m policyopt.app.train_builtin`")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32, local_files_only=True)
    model.eval()
    return model, tokenizer


def builtin_accuracy(path: str | Path | None = None) -> dict[str, Any]:
    """The measured held-out accuracies shipped with the model (``accuracy.json``)."""
    path = Path(path) if path is not None else BUILTIN_DIR
    return json.loads((path / "accuracy.json").read_text())


def tiny_model(seed: int = 0) -> tuple[torch.nn.Module, Any]:
    """A ~60k-parameter untrained Llama with the project's character tokenizer (fast demos and tests)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from policyopt.lm.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                      tie_word_embeddings=True, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg), tok
