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
from typing import Annotated, Any, Literal

import pydantic
import torch

from policyopt.core.config import configclass
from policyopt.data.text import SFTBatch
from policyopt.nets.optim import optimizer_step

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
    max_grad_norm: Annotated[float, pydantic.Field(gt=0)] | None = 1.0
    """Clip the global gradient norm to this value (None: no clipping)."""
    warmup_updates: Annotated[int, pydantic.Field(ge=0)] = 0
    """Linear learning-rate warm-up over this many updates."""
    total_updates: Annotated[int, pydantic.Field(ge=0)] = 0
    """Cosine decay to ``min_lr_ratio * learning_rate`` over this many updates (0: constant)."""
    min_lr_ratio: Annotated[float, pydantic.Field(ge=0, le=1)] = 0.1
    """Final learning rate as a fraction of the peak (cosine schedule only)."""
    loss_reduction: Literal["token", "sequence"] = "token"
    """``token``: mean over all completion tokens of the batch; ``sequence``: mean of per-sequence means."""


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

    weight_keys = ("model",)
    """Paths in ``state_dict()`` of the learned weights (what ``--init-from`` copies from another run)."""

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
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = optimizer_step(self.optimizer, params, loss, self.config.max_grad_norm)
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


