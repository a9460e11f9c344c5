"""Supervised fine-tuning (SFT) on prompt/completion pairs, loss on completion tokens only.

The objective is the negative log-likelihood of the completion given the prompt,

    L(theta) = - sum_{i, t in completion_i} log pi_theta(y_{i,t} | x_i, y_{i,<t}) / N_tokens

(token-level mean over the batch; ``loss_reduction="sequence"`` averages per sequence first). Prompt
and padding tokens carry no loss. Only the hidden states of completion positions go through the
output projection, so the ``[batch, time, vocab]`` logits tensor is never materialised.

Pieces (composed by the shared ``Trainer``; SFT has no loop of its own):

- :class:`SFTCollector` tokenises all pairs once into a padded ``[N, L]`` table and serves seeded,
  epoch-shuffled :class:`SFTBatch` es; its ``state_dict`` (seed, epoch, position) resumes exactly.
- :class:`SFT` (an ``Algorithm``) owns the model's optimizer and learning-rate schedule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import pydantic
import torch

from policyopt.runtime.config import configclass

IGNORE = -100


@configclass
class SFTConfig:
    learning_rate: Annotated[float, pydantic.Field(gt=0)] = 1e-3
    """Peak AdamW learning rate."""
    weight_decay: Annotated[float, pydantic.Field(ge=0)] = 0.0
    """Decoupled AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW (beta1, beta2)."""
    eps: Annotated[float, pydantic.Field(gt=0)] = 1e-8
    """AdamW epsilon."""
    max_grad_norm: Annotated[float, pydantic.Field(ge=0)] = 1.0
    """Clip the global gradient norm to this value (0 disables clipping)."""
    warmup_updates: Annotated[int, pydantic.Field(ge=0)] = 0
    """Linear learning-rate warm-up over this many updates."""
    total_updates: Annotated[int, pydantic.Field(ge=0)] = 0
    """Cosine decay to ``min_lr_ratio * learning_rate`` over this many updates (0: constant)."""
    min_lr_ratio: Annotated[float, pydantic.Field(ge=0, le=1)] = 0.1
    """Final learning rate as a fraction of the peak (cosine schedule only)."""
    loss_reduction: Literal["token", "sequence"] = "token"
    """``token``: mean over all completion tokens of the batch; ``sequence``: mean of per-sequence means."""


@configclass
class SFTDataConfig:
    batch_size: Annotated[int, pydantic.Field(ge=1)] = 64
    """Prompt/completion pairs per batch."""
    seed: int = 0
    """Seed of the epoch shuffles."""
    max_length: Annotated[int, pydantic.Field(ge=2)] = 512
    """Longest allowed prompt+completion in tokens; a longer pair is an error (never silently cut)."""
    add_eos: bool = True
    """Append the tokenizer's EOS token to every completion (so the model learns to stop)."""
    length_grouping: Annotated[int, pydantic.Field(ge=0)] = 0
    """Cut padding: sort each window of this many batches by length, then shuffle the batches
    (0 or 1: off). Every pair is still visited once per epoch. Caution: on multi-task data, length
    groups are task groups; training the built-in model this way made the loss oscillate between
    tasks and learn far slower, so it is off by default."""


@dataclass(frozen=True)
class SFTBatch:
    """Right-padded token batch. ``loss_mask[i, t]`` is True where token ``t`` is a completion token.

    Shapes: ``input_ids``, ``attention_mask``, ``loss_mask`` all ``[batch, time]``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    num_steps: int

    def __post_init__(self) -> None:
        if not (self.input_ids.shape == self.attention_mask.shape == self.loss_mask.shape):
            shapes = [tuple(t.shape) for t in (self.input_ids, self.attention_mask, self.loss_mask)]
            raise ValueError(f"SFTBatch shapes differ: input_ids/attention_mask/loss_mask {shapes}")


def completion_nll(model: torch.nn.Module, batch: SFTBatch,
                   reduction: str = "token") -> tuple[torch.Tensor, int]:
    """Mean negative log-likelihood of the completion tokens and their count.

    Position ``t`` predicts token ``t+1``; only positions whose *target* is a completion token are
    projected to the vocabulary (``[n_completion_tokens, vocab]`` logits, never ``[B, T, vocab]``).
    """
    targets = batch.input_ids[:, 1:]
    mask = batch.loss_mask[:, 1:]
    n_tokens = int(mask.sum())
    if n_tokens == 0:
        raise ValueError("SFT batch has no completion tokens (every loss_mask entry is False)")
    head = model.get_output_embeddings()
    if head is not None:
        out = model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        hidden = out.last_hidden_state
        logits = head(hidden[:, :-1][mask])
    else:  # models without a separable head: full logits
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1][mask]
    nll = torch.nn.functional.cross_entropy(logits.float(), targets[mask], reduction="none")
    if reduction == "token":
        return nll.mean(), n_tokens
    rows = mask.nonzero()[:, 0]
    per_seq = torch.zeros(mask.shape[0], dtype=nll.dtype).index_add_(0, rows, nll)
    counts = mask.sum(1)
    return (per_seq[counts > 0] / counts[counts > 0]).mean(), n_tokens


class SFT:
    """Supervised fine-tuning as an ``Algorithm``: ``update(SFTBatch) -> metrics``.

    Owns the AdamW optimizer and the schedule position; ``state_dict`` holds model weights,
    optimizer state and the update counter (a state tree of tensors and JSON scalars).
    """

    def __init__(self, model: torch.nn.Module, config: SFTConfig | None = None):
        self.model = model
        self.config = config or SFTConfig()
        c = self.config
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=c.learning_rate, betas=tuple(c.betas), eps=c.eps, weight_decay=c.weight_decay,
        )
        self.num_updates = 0

    def learning_rate(self, update: int) -> float:
        """Warm-up then cosine schedule, as a function of the update index (pure)."""
        c = self.config
        if c.warmup_updates and update < c.warmup_updates:
            return c.learning_rate * (update + 1) / c.warmup_updates
        if not c.total_updates:
            return c.learning_rate
        frac = min(1.0, (update - c.warmup_updates) / max(1, c.total_updates - c.warmup_updates))
        cosine = 0.5 * (1.0 + math.cos(math.pi * frac))
        return c.learning_rate * (c.min_lr_ratio + (1.0 - c.min_lr_ratio) * cosine)

    def update(self, batch: SFTBatch) -> dict[str, float]:
        self.model.train()
        lr = self.learning_rate(self.num_updates)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, n_tokens = completion_nll(self.model, batch, self.config.loss_reduction)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.optimizer.step()
        self.num_updates += 1
        return {"loss/sft": float(loss.detach()), "stats/grad_norm": float(grad_norm),
                "stats/completion_tokens": float(n_tokens), "stats/learning_rate": lr}

    def state_dict(self) -> dict[str, Any]:
        opt = self.optimizer.state_dict()
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": {"state": {str(k): {n: t.detach().clone() if torch.is_tensor(t) else t
                                             for n, t in v.items()} for k, v in opt["state"].items()},
                          "param_groups": [_plain(g) for g in opt["param_groups"]]},
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        opt = state["optimizer"]
        groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in opt["param_groups"]]
        self.optimizer.load_state_dict({"state": {int(k): v for k, v in opt["state"].items()},
                                        "param_groups": groups})
        self.num_updates = int(state["num_updates"])


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (state trees hold JSON-compatible containers only)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class SFTCollector:
    """Serves seeded, epoch-shuffled :class:`SFTBatch` es of prompt/completion pairs.

    All pairs are tokenised once: ``prompt`` with the tokenizer's special tokens (e.g. BOS),
    ``completion`` without, plus EOS when ``add_eos``. Epoch ``e`` visits the pairs in the order
    ``np.random.default_rng([seed, e]).permutation(N)``; a batch that crosses an epoch boundary
    continues into the next epoch, so every batch is full. ``state_dict() = {seed, epoch,
    position, num_examples}`` resumes exactly. ``num_steps`` of a batch is its number of pairs.
    """

    def __init__(self, pairs: Sequence[tuple[str, str]] | Sequence[Any], tokenizer: Any,
                 config: SFTDataConfig | None = None):
        self.config = config or SFTDataConfig()
        prompts, completions = _split_pairs(pairs)
        if not prompts:
            raise ValueError("SFTCollector needs at least one prompt/completion pair")
        if tokenizer.pad_token_id is None:
            raise ValueError("tokenizer has no pad token; set tokenizer.pad_token first")
        if self.config.add_eos and tokenizer.eos_token_id is None:
            raise ValueError("add_eos=True but the tokenizer has no eos token")
        self.pad_id = int(tokenizer.pad_token_id)
        self.ids, self.completion_mask, self.lengths = self._tokenise(prompts, completions, tokenizer)
        self.epoch, self.position = 0, 0
        self._order = self._permutation(0)

    def _tokenise(self, prompts: list[str], completions: list[str], tokenizer: Any):
        p_ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
        c_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
        eos = [int(tokenizer.eos_token_id)] if self.config.add_eos else []
        p_len = np.array([len(p) for p in p_ids])
        c_len = np.array([len(c) for c in c_ids]) + len(eos)
        lengths = p_len + c_len
        too_long = np.flatnonzero(lengths > self.config.max_length)
        if too_long.size:
            i = int(too_long[0])
            raise ValueError(f"pair {i} has {lengths[i]} tokens > max_length={self.config.max_length} "
                             f"(prompt {prompts[i][:60]!r}); raise max_length or shorten it")
        if np.any(c_len == 0):
            i = int(np.flatnonzero(c_len == 0)[0])
            raise ValueError(f"pair {i} has an empty completion and add_eos=False")
        width = int(lengths.max())
        ids = np.full((len(prompts), width), self.pad_id, dtype=np.int64)
        flat = np.fromiter((t for p, c in zip(p_ids, c_ids) for t in (*p, *c, *eos)), dtype=np.int64,
                           count=int(lengths.sum()))
        cols = np.arange(width)
        valid = cols[None, :] < lengths[:, None]
        ids[valid] = flat  # row-major fill matches the concatenation order
        completion_mask = valid & (cols[None, :] >= p_len[:, None])
        return ids, completion_mask, lengths

    @property
    def num_examples(self) -> int:
        return int(self.ids.shape[0])

    def _permutation(self, epoch: int) -> np.ndarray:
        """The visiting order of epoch ``epoch``: a seeded permutation, optionally length-grouped."""
        rng = np.random.default_rng([self.config.seed, epoch])
        order = rng.permutation(self.num_examples)
        group, bs = self.config.length_grouping, self.config.batch_size
        if group <= 1:
            return order
        window = group * bs
        chunks = [c[np.argsort(self.lengths[c], kind="stable")] for c in
                  np.array_split(order, range(window, order.size, window))]
        batches = [b for c in chunks for b in np.array_split(c, range(bs, c.size, bs))]
        return np.concatenate([batches[i] for i in rng.permutation(len(batches))])

    def collect(self) -> SFTBatch:
        want, parts = self.config.batch_size, []
        while want > 0:
            take = self._order[self.position:self.position + want]
            parts.append(take)
            want -= take.size
            self.position += take.size
            if self.position >= self.num_examples:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
        index = np.concatenate(parts)
        width = int(self.lengths[index].max())
        attention = np.arange(width)[None, :] < self.lengths[index][:, None]
        return SFTBatch(input_ids=torch.from_numpy(self.ids[index, :width]),
                        attention_mask=torch.from_numpy(attention).long(),
                        loss_mask=torch.from_numpy(self.completion_mask[index, :width]),
                        num_steps=int(index.size))

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.config.seed, "epoch": self.epoch, "position": self.position,
                "num_examples": self.num_examples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["num_examples"]) != self.num_examples or int(state["seed"]) != self.config.seed:
            raise ValueError(f"SFTCollector state is for {state['num_examples']} pairs, seed {state['seed']};"
                             f" this collector has {self.num_examples} / seed {self.config.seed}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)


def _split_pairs(pairs: Sequence[Any]) -> tuple[list[str], list[str]]:
    """Accept ``(prompt, completion)`` tuples or objects with ``prompt`` and ``completion`` attributes."""
    prompts, completions = [], []
    for i, pair in enumerate(pairs):
        if hasattr(pair, "prompt") and hasattr(pair, "completion"):
            p, c = pair.prompt, pair.completion
        elif isinstance(pair, (tuple, list)) and len(pair) == 2:
            p, c = pair
        else:
            raise TypeError(f"pair {i}: expected (prompt, completion) or an object with .prompt/.completion, "
                            f"got {type(pair).__name__}")
        if not isinstance(p, str) or not isinstance(c, str):
            raise TypeError(f"pair {i}: prompt and completion must be strings")
        prompts.append(p)
        completions.append(c)
    return prompts, completions
