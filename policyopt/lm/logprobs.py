"""Per-token log-probabilities of (prompt, completion) batches, computed in chunks.

The training forward pass of every language-model method (GRPO, PPO, DPO, KL penalties) needs
``log pi(y_t | x, y_<t)`` for each completion token. Materialising the full-vocabulary logits
``[batch, time, vocab]`` is what makes peers run out of memory (trl#3678); here the transformer body
runs on ``row_chunk`` rows at a time and the output head is applied to ``token_chunk`` completion
positions at a time, so at most ``[token_chunk, vocab]`` logits exist at once. When gradients are
enabled each head chunk is wrapped in activation checkpointing, so the backward pass does not keep
the chunks' logits alive either (they are recomputed chunk by chunk). :func:`head_logprobs` is that
chunked head, and the only one in the library: the grouped pass (``algos/lm_forward.py``) and DPO's
packed pass (``algos/dpo.py``) call it on their own hidden states.

Layout used throughout ``policyopt.lm``:

- prompts are **left-padded**: ``prompt_ids [B, P]`` with ``prompt_mask [B, P]`` (bool, True = token);
- completions are **right-padded**: ``completion_ids [B, N]`` with ``completion_mask [B, N]``;
- position ids count real tokens only (``cumsum(mask) - 1``), the convention of ``model.generate``,
  so a left-padded row gets the same positions as the unpadded sequence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

_UNSUPPORTED_HEAD_ATTRS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier")


@dataclass(frozen=True)
class TokenLogProbs:
    """Per-token results for a batch of completions; zeros where ``completion_mask`` is False.

    ``logprobs [B, N]``: ``log pi(y_t | x, y_<t)``; ``entropy [B, N]`` (or None): entropy of the
    next-token distribution at each completion position (same temperature as ``logprobs``).
    """

    logprobs: torch.Tensor
    entropy: torch.Tensor | None = None


def left_pad(sequences: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad ragged token-id lists -> ``(ids [B, P] long, mask [B, P] bool)``; rows must be non-empty."""
    if len(sequences) == 0:
        raise ValueError("left_pad: got an empty batch of sequences")
    lengths = [len(s) for s in sequences]
    if min(lengths) == 0:
        raise ValueError(f"left_pad: sequence {lengths.index(0)} is empty; every prompt needs >= 1 token")
    width = max(lengths)
    ids = torch.full((len(sequences), width), int(pad_token_id), dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq):] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, width - len(seq):] = True
    return ids, mask


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions that count real tokens only: ``cumsum(mask) - 1`` clamped at 0. ``[B, T] -> [B, T]``."""
    return (mask.long().cumsum(-1) - 1).clamp_(min=0)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Temporarily put ``model`` in eval mode (no dropout), restoring its training flag afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face ``PreTrainedModel`` inside a peft wrapper (LoRA layers stay injected)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def body_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Split a causal LM into its transformer body (returns hidden states) and its output head."""
    hf = unwrap_model(model)
    for attr in _UNSUPPORTED_HEAD_ATTRS:
        value = getattr(hf.config, attr, None)
        if value not in (None, 1, 1.0):
            raise NotImplementedError(
                f"{type(hf).__name__}: config.{attr}={value} transforms the logits after the output head; "
                "chunked log-probs do not support it")
    prefix = getattr(hf, "base_model_prefix", "")
    body = getattr(hf, prefix, None) if prefix else None
    head = hf.get_output_embeddings() if hasattr(hf, "get_output_embeddings") else None
    if body is None or head is None:
        raise TypeError(f"{type(hf).__name__} is not a Hugging Face causal LM with a body and an output head")
    return body, head


def _head_chunk(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, temperature: float,
                with_entropy: bool) -> torch.Tensor:
    """``hidden [M, H]``, ``targets [M]`` -> ``[M]`` log-probs, or ``[2, M]`` (log-probs, entropy)."""
    logits = head(hidden).float()
    if temperature != 1.0:
        logits = logits / temperature
    logp = logits.log_softmax(-1)
    token_lp = logp.gather(-1, targets[:, None]).squeeze(-1)
    if not with_entropy:
        return token_lp
    entropy = -(logp.exp() * logp).sum(-1)
    return torch.stack([token_lp, entropy])


def head_logprobs(
    head: torch.nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    token_chunk: int = 1024,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> TokenLogProbs:
    """Token log-probs (and entropy) from hidden states, applying ``head`` to ``token_chunk`` positions at a time.

    The one place in the library that turns hidden states into ``log softmax(head(h) / temperature)[y]``.
    Shapes: ``hidden [*S, H]`` (the state *before* each target token), ``targets [*S]`` (long), ``mask [*S]``
    (bool, or None = every position). Only the masked positions reach the head, so at most
    ``[token_chunk, vocab]`` logits exist at once and padding costs nothing; when gradients flow into
    ``hidden`` each chunk is activation-checkpointed (its logits are recomputed in the backward pass).
    Returns :class:`TokenLogProbs` with ``[*S]`` float32 tensors, zero where ``mask`` is False.
    Typical ``S``: ``[B, N]`` padded completions, or ``[M]`` positions already gathered by the caller.
    """
    if token_chunk < 1:
        raise ValueError(f"token_chunk must be >= 1, got {token_chunk}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 for log-probs, got {temperature}")
    if mask is None:
        selected, picked = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    else:
        mask = mask.bool()
        selected, picked = hidden[mask], targets[mask]
    grad = torch.is_grad_enabled() and selected.requires_grad
    pieces = []
    for t0 in range(0, selected.shape[0], token_chunk):
        args = (head, selected[t0:t0 + token_chunk], picked[t0:t0 + token_chunk], temperature, with_entropy)
        pieces.append(checkpoint(_head_chunk, *args, use_reentrant=False) if grad else _head_chunk(*args))
    flat = (torch.cat(pieces, -1) if pieces
            else selected.new_zeros((2, 0) if with_entropy else (0,), dtype=torch.float32))

    def place(values: torch.Tensor) -> torch.Tensor:
        if mask is None:
            return values.reshape(targets.shape)
        return values.new_zeros(mask.shape).masked_scatter(mask, values)

    if with_entropy:
        return TokenLogProbs(place(flat[0]), place(flat[1]))
    return TokenLogProbs(place(flat))


def completion_logprobs(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    row_chunk: int | None = None,
    token_chunk: int = 1024,
) -> TokenLogProbs:
    """Log-probabilities of the completion tokens under ``model``, chunked over rows and tokens.

    Shapes: ``prompt_* [B, P]`` (left-padded), ``completion_* [B, N]`` (right-padded). Returns
    :class:`TokenLogProbs` with ``[B, N]`` tensors, zero at padding. ``temperature`` divides the
    logits (use the sampling temperature to recompute the behaviour distribution without top-k/p).
    Differentiable unless called under ``torch.no_grad``/``inference_mode``.
    """
    _check_batch(prompt_ids, prompt_mask, completion_ids, completion_mask)
    if torch.is_grad_enabled():  # tensors made under inference_mode cannot enter autograd graphs
        prompt_ids, prompt_mask, completion_ids, completion_mask = (
            t.clone() if t.is_inference() else t for t in (prompt_ids, prompt_mask, completion_ids, completion_mask))
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 for log-probs, got {temperature}")
    if token_chunk < 1 or (row_chunk is not None and row_chunk < 1):
        raise ValueError(f"row_chunk and token_chunk must be >= 1, got {row_chunk}, {token_chunk}")
    body, head = body_and_head(model)
    batch, prompt_len = prompt_ids.shape
    row_chunk = row_chunk or batch
    ids = torch.cat([prompt_ids, completion_ids], 1)
    mask = torch.cat([prompt_mask, completion_mask], 1).bool()
    pos = position_ids(mask)
    lp_rows, ent_rows = [], []
    for r0 in range(0, batch, row_chunk):
        rows = slice(r0, r0 + row_chunk)
        hidden = body(input_ids=ids[rows], attention_mask=mask[rows].long(), position_ids=pos[rows],
                      use_cache=False).last_hidden_state
        # the hidden state at position i predicts token i + 1
        hidden = hidden[:, prompt_len - 1: ids.shape[1] - 1]
        out = head_logprobs(head, hidden, completion_ids[rows], completion_mask[rows], token_chunk=token_chunk,
                            temperature=temperature, with_entropy=with_entropy)
        lp_rows.append(out.logprobs)
        ent_rows.append(out.entropy)
    return TokenLogProbs(torch.cat(lp_rows), torch.cat(ent_rows) if with_entropy else None)


def _check_batch(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                 completion_mask: torch.Tensor) -> None:
    if prompt_ids.shape != prompt_mask.shape or prompt_ids.dim() != 2:
        raise ValueError(f"prompt_ids {tuple(prompt_ids.shape)} and prompt_mask {tuple(prompt_mask.shape)} "
                         "must have the same [batch, prompt_len] shape")
    if completion_ids.shape != completion_mask.shape or completion_ids.dim() != 2:
        raise ValueError(f"completion_ids {tuple(completion_ids.shape)} and completion_mask "
                         f"{tuple(completion_mask.shape)} must have the same [batch, completion_len] shape")
    if prompt_ids.shape[0] != completion_ids.shape[0]:
        raise ValueError(f"batch size mismatch: {prompt_ids.shape[0]} prompts vs {completion_ids.shape[0]} "
                         "completions")
    if prompt_ids.shape[1] == 0 or not bool(prompt_mask[:, -1].all()):
        raise ValueError("prompts must be left-padded and non-empty: prompt_mask[:, -1] must be all True")


def reference_logprobs(policy: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                       completion_ids: torch.Tensor, completion_mask: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """Reference-policy log-probs ``[B, N]`` for one batch, without gradients.

    ``policy`` is an :class:`~policyopt.lm.policy.LMPolicy` (its ``reference()`` context gives the
    adapters-disabled model or the separate frozen reference) or a plain model used as the
    reference. Call it once per batch; keyword arguments go to :func:`completion_logprobs`.
    """
    ctx = policy.reference() if hasattr(policy, "reference") else contextlib.nullcontext(policy)
    with torch.inference_mode(), ctx as ref:
        return completion_logprobs(ref, prompt_ids, prompt_mask, completion_ids, completion_mask,
                                   **kwargs).logprobs


def precompute_reference_logprobs(
    policy: Any, batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]], **kwargs: Any,
) -> Iterator[torch.Tensor]:
    """Reference log-probs for offline data (DPO-style), one ``[B, N]`` tensor per input batch.

    ``batches`` yields ``(prompt_ids, prompt_mask, completion_ids, completion_mask)``; store the
    results next to the data so the reference model is never run again during training.
    """
    for prompt_ids, prompt_mask, completion_ids, completion_mask in batches:
        yield reference_logprobs(policy, prompt_ids, prompt_mask, completion_ids, completion_mask, **kwargs)


def sequence_logprob(token_logprobs: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Sum of per-token log-probs over each completion: ``[B, N] -> [B]`` (padding excluded)."""
    return (token_logprobs * completion_mask).sum(-1)


__all__ = ["TokenLogProbs", "body_and_head", "completion_logprobs", "eval_mode", "head_logprobs", "left_pad",
           "position_ids", "precompute_reference_logprobs", "reference_logprobs", "sequence_logprob", "unwrap_model"]
