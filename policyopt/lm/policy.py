"""``LMPolicy``: any Hugging Face causal LM and its tokenizer, used as a policy.

One object holds the model (GPT-2, Llama, Qwen2, ... through ``AutoModelForCausalLM``, loaded from
a local directory or passed in memory), its tokenizer, an optional chat template and the
*reference policy* that KL penalties and DPO compare against:

- with LoRA (``peft``, extra ``lm``) the reference is the same model with its adapters disabled,
  so no second copy of the weights exists: ``with policy.reference() as ref: ...``;
- without LoRA, an explicit frozen reference model (``reference_model=`` or
  :meth:`LMPolicy.freeze_reference`, a detached copy of the current weights).

Sampling goes through :func:`policyopt.lm.sampling.sample` and log-probs through
:func:`policyopt.lm.logprobs.completion_logprobs`; this class only adds tokenisation, the EOS/pad
ids and a cache of stop-string tables.
"""

from __future__ import annotations

import contextlib
import copy
import numbers
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import pydantic
import torch

from policyopt.core.config import configclass
from policyopt.lm.logprobs import TokenLogProbs, completion_logprobs
from policyopt.lm.sampling import Samples, SamplingConfig, StopStrings, sample

Prompt = str | Sequence[Mapping[str, str]] | Sequence[int]


@configclass
class LoRAConfig:
    """Low-rank adapters (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models")."""

    r: Annotated[int, pydantic.Field(ge=1)] = 8
    """Rank of the update ``B @ A``."""
    alpha: Annotated[float, pydantic.Field(gt=0)] = 16.0
    """Scale: the update is multiplied by ``alpha / r``."""
    dropout: Annotated[float, pydantic.Field(ge=0, lt=1)] = 0.0
    """Dropout on the adapter input (0 keeps sampling and training log-probs identical)."""
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                       "down_proj", "c_attn", "c_proj", "c_fc")
    """Module names that get adapters; names absent from the model are ignored."""


def disable_dropout(model: torch.nn.Module) -> None:
    """Set every ``nn.Dropout`` probability to 0 (RL needs the same distribution when sampling and training)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


class LMPolicy:
    """A causal LM + tokenizer as a policy; see the module docstring.

    ``model``: a ``PreTrainedModel`` (or a peft ``PeftModel``); ``tokenizer``: its tokenizer;
    ``chat_template``: a Jinja template replacing the tokenizer's; ``reference_model``: a frozen
    reference (not allowed together with LoRA); ``lora``: wrap ``model`` with new adapters.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, chat_template: str | None = None,
                 reference_model: torch.nn.Module | None = None, lora: LoRAConfig | None = None,
                 no_dropout: bool = True):
        if lora is not None:
            model = _add_lora(model, lora)
        if reference_model is not None and _is_peft(model):
            raise ValueError("LMPolicy: a LoRA policy uses its adapter-free base as the reference; "
                             "do not pass reference_model as well")
        if chat_template is not None:
            tokenizer.chat_template = chat_template
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
            raise ValueError("LMPolicy: the tokenizer has neither a pad token nor an EOS token to pad with")
        self.model, self.tokenizer = model, tokenizer
        self.reference_model = _frozen(reference_model) if reference_model is not None else None
        if no_dropout:
            disable_dropout(model)
        self._stop_cache: dict[tuple[str, ...], StopStrings] = {}

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: torch.dtype = torch.float32, lora: LoRAConfig | None = None,
                        frozen_reference: bool = False, chat_template: str | None = None) -> LMPolicy:
        """Load model and tokenizer from a local directory (nothing is downloaded).

        ``frozen_reference=True`` loads a second, frozen copy as the reference (without LoRA).
        float32 is the default: bf16 matmuls are several times slower on most CPUs.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"LMPolicy.from_pretrained: {path} has no config.json (a local model directory "
                                    "saved with save_pretrained is required)")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        reference = None
        if frozen_reference:
            reference = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
        return cls(model, tokenizer, chat_template=chat_template, reference_model=reference, lora=lora)

    # ------------------------------------------------------------------------------ reference
    @property
    def has_lora(self) -> bool:
        return _is_peft(self.model)

    def freeze_reference(self) -> None:
        """Use a frozen copy of the current weights as the reference (for policies without LoRA)."""
        if self.has_lora:
            raise ValueError("freeze_reference: a LoRA policy already has its reference (adapters disabled)")
        self.reference_model = frozen_copy(self.model)

    def sync_reference(self) -> None:
        """Make the frozen reference equal to the current weights (MPO's switch to the DPO model)."""
        if self.reference_model is None:
            raise ValueError("LMPolicy.sync_reference: no frozen reference (LoRA policies use their base)")
        self.reference_model.load_state_dict(self.model.state_dict())

    @contextlib.contextmanager
    def reference(self) -> Iterator[torch.nn.Module]:
        """Context yielding the reference model: the adapters-disabled base, or the frozen copy."""
        if self.has_lora:
            with self.model.disable_adapter():
                yield self.model
        elif self.reference_model is not None:
            yield self.reference_model
        else:
            raise ValueError("LMPolicy.reference: no reference policy; use LoRA, pass reference_model=, "
                             "or call freeze_reference()")

    # ------------------------------------------------------------------------------- tokens
    @property
    def pad_token_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id)

    @property
    def eos_token_ids(self) -> list[int]:
        """EOS ids of the tokenizer and of the model's generation config (a list for chat models)."""
        ids = {self.tokenizer.eos_token_id}
        gen = getattr(self.model, "generation_config", None)
        extra = getattr(gen, "eos_token_id", None) if gen is not None else None
        ids.update(extra if isinstance(extra, (list, tuple)) else [extra])
        return sorted(int(i) for i in ids if i is not None)

    def encode_prompts(self, prompts: Sequence[Prompt], *, chat: bool = False) -> list[list[int]]:
        """Token ids per prompt. A prompt is text, a list of chat messages (``{"role", "content"}``), or
        already token ids (a list or 1-D tensor, kept as is). With ``chat=True`` a text prompt becomes one user message.
        Chat prompts use the chat template with the generation prompt appended.
        """
        out = []
        for i, prompt in enumerate(prompts):
            if isinstance(prompt, str) and not chat:
                out.append(list(self.tokenizer(prompt).input_ids))
                continue
            if isinstance(prompt, str):
                prompt = [{"role": "user", "content": prompt}]
            if isinstance(prompt, torch.Tensor):
                prompt = prompt.tolist()
            if len(prompt) and all(isinstance(t, numbers.Integral) for t in prompt):
                out.append([int(t) for t in prompt])
                continue
            if not getattr(self.tokenizer, "chat_template", None):
                raise ValueError(f"prompt {i} is a chat conversation but the tokenizer has no chat template; "
                                 "pass chat_template= to LMPolicy")
            ids = self.tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=True,
                                                     return_dict=False)
            out.append(list(ids))
        return out

    def decode(self, samples: Samples, *, skip_special_tokens: bool = True) -> list[str]:
        """Completion texts of a :class:`Samples` batch."""
        return self.tokenizer.batch_decode(samples.completion_lists(), skip_special_tokens=skip_special_tokens)

    def stop_strings(self, strings: Sequence[str]) -> StopStrings:
        """The (cached) stop-string tables for this tokenizer and model vocabulary."""
        key = tuple(strings)
        if key not in self._stop_cache:
            vocab = self.model.get_output_embeddings().weight.shape[0]
            self._stop_cache[key] = StopStrings.from_tokenizer(self.tokenizer, key, vocab_size=vocab)
        return self._stop_cache[key]

    # ------------------------------------------------------------------------- computation
    def sample(self, prompts: Sequence[Prompt], config: SamplingConfig, generator: torch.Generator | None,
               *, chat: bool = False) -> Samples:
        """Encode ``prompts`` and sample completions (see :func:`policyopt.lm.sampling.sample`)."""
        ids = self.encode_prompts(prompts, chat=chat)
        stop = self.stop_strings(config.stop_strings) if config.stop_strings else None
        return sample(self.model, ids, config, generator=generator, pad_token_id=self.pad_token_id,
                      eos_token_ids=self.eos_token_ids, stop=stop)

    def logprobs(self, samples: Samples, **kwargs: Any) -> TokenLogProbs:
        """Training-time log-probs of a :class:`Samples` batch (differentiable; chunked)."""
        return completion_logprobs(self.model, samples.prompt_ids, samples.prompt_mask, samples.completion_ids,
                                   samples.completion_mask, **kwargs)

    # ---------------------------------------------------------------------------- checkpoint
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable weights (the adapters only, with LoRA) as a flat state tree of tensors."""
        return {name: p.detach().clone() for name, p in self.model.named_parameters() if p.requires_grad}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        params = {name: p for name, p in self.model.named_parameters() if p.requires_grad}
        missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        if missing or unexpected:
            raise KeyError(f"LMPolicy.load_state_dict: missing {missing[:5]}, unexpected {unexpected[:5]}")
        with torch.no_grad():
            for name, p in params.items():
                if tuple(state[name].shape) != tuple(p.shape):
                    raise ValueError(f"LMPolicy.load_state_dict: {name} has shape {tuple(state[name].shape)}, "
                                     f"expected {tuple(p.shape)}")
                p.copy_(state[name])


def _is_peft(model: torch.nn.Module) -> bool:
    return callable(getattr(model, "disable_adapter", None)) and hasattr(model, "peft_config")


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen deep copy of ``model`` (eval mode, no gradients): the one way a reference policy or a
    previous iterate is held by every LM algorithm without LoRA (``LMPolicy.freeze_reference``, the
    online preference methods' reference and INPO's previous iterate). With LoRA the reference is the
    adapters-disabled base instead (:meth:`LMPolicy.reference`); offline methods on a fixed dataset
    cache the reference's log-probs once (``policyopt.algos.dpo.cached_reference``)."""
    return _frozen(copy.deepcopy(model))


def _frozen(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _add_lora(model: torch.nn.Module, config: LoRAConfig) -> torch.nn.Module:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:  # pragma: no cover - peft is in the lm extra
        raise ImportError("LoRA needs peft: pip install 'policyopt[lm]'") from err
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in config.target_modules if t in names]
    if not targets:
        raise ValueError(f"LoRAConfig.target_modules {list(config.target_modules)} match no module of "
                         f"{type(model).__name__}")
    is_conv1d = any(type(m).__name__ == "Conv1D" for m in model.modules())
    peft_config = LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                             target_modules=targets, task_type="CAUSAL_LM", fan_in_fan_out=is_conv1d)
    return get_peft_model(model, peft_config)


__all__ = ["LMPolicy", "LoRAConfig", "disable_dropout"]
