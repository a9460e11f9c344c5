"""Typed batches and batch geometry of the language-model side: ``TextRollout`` (one generation block)
and ``CollectConfig`` (how many prompts and completions a block has, how they are sampled)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Literal

import pydantic
import torch

from policyopt.core.config import configclass

FINISH_LENGTH = 0
"""``finish_reason`` of a completion cut at the token limit (as ``policyopt.lm.sampling.FINISH_LENGTH``)."""


@configclass
class CollectConfig:
    """How a generation block is sampled (the batch geometry speaks in prompts and completions)."""

    prompts_per_step: Annotated[int, pydantic.Field(ge=1)] = 16
    """Prompts (groups) per update."""
    completions_per_prompt: Annotated[int, pydantic.Field(ge=1)] = 8
    """Completions sampled per prompt (the group size G)."""
    max_new_tokens: Annotated[int, pydantic.Field(ge=1)] = 24
    """Longest completion (per turn, for multi-turn episodes), in tokens."""
    temperature: Annotated[float, pydantic.Field(gt=0)] = 1.0
    """Sampling temperature (the trained policy is the tempered one)."""
    top_k: Annotated[int, pydantic.Field(ge=0)] = 0
    """Top-k truncation while sampling (0: off). Truncation makes the old log-probs be recomputed."""
    top_p: Annotated[float, pydantic.Field(gt=0, le=1)] = 1.0
    """Nucleus truncation while sampling (1: off)."""
    dynamic_sampling: bool = False
    """DAPO dynamic sampling: drop groups whose rewards all tie and refill the batch with new prompts."""
    max_refill_rounds: Annotated[int, pydantic.Field(ge=0)] = 4
    """Extra sampling rounds allowed per batch when dynamic sampling drops groups."""
    tool_env: Literal["none", "calculator"] = "none"
    """``calculator``: multi-turn episodes in the calculator tool environment (``policyopt.lm.textenv``)."""
    max_turns: Annotated[int, pydantic.Field(ge=1)] = 3
    """Policy turns per episode for multi-turn text environments."""
    group_mode: Literal["parallel", "serial"] = "parallel"
    """``parallel``: G independent completions per prompt. ``serial`` (S-GRPO): one sampled path per
    prompt, cut at ``serial_exits - 1`` evenly spaced early exits (plus the full path); at each exit
    ``exit_text`` is inserted (out of the loss) and an answer is sampled."""
    serial_exits: Annotated[int, pydantic.Field(ge=2)] = 4
    """Members of a serial group (early exits + the full path)."""
    exit_text: str = "</think>"
    """Text inserted at an early exit before the answer is sampled (S-GRPO's exit prompt)."""


@dataclass(frozen=True)
class TextRollout:
    """One generation block. ``B`` completions in ``num_groups`` groups (one group per prompt/task).

    Shapes: ``prompt_ids``/``prompt_mask`` ``[B, P]`` left-padded; ``completion_ids``/``completion_mask``
    ``[B, N]`` right-padded (all tokens after the prompt, environment observations included);
    ``loss_mask [B, N]``: tokens the policy sampled; ``logprobs [B, N]``: their behaviour log-probs
    (0 elsewhere); ``rewards [B]`` (NaN where unscorable), ``scorable [B]`` bool, ``components``:
    name -> ``[B]``; ``group_index [B]`` in ``[0, num_groups)``; ``finish_reason [B]`` (0 = hit the
    length limit); ``num_tool_calls [B]``; ``greedy_rewards``/``greedy_scorable`` ``[num_groups]``
    (ReMax only, else None). ``metrics`` are the collector's scalar metrics of this block.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    loss_mask: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor
    scorable: torch.Tensor
    components: dict[str, torch.Tensor]
    group_index: torch.Tensor
    finish_reason: torch.Tensor
    num_tool_calls: torch.Tensor
    num_steps: int
    metrics: dict[str, float]
    greedy_rewards: torch.Tensor | None = None
    greedy_scorable: torch.Tensor | None = None

    def __post_init__(self) -> None:
        b, n = self.completion_ids.shape
        checks = {"prompt_ids": (self.prompt_ids, 0), "prompt_mask": (self.prompt_mask, 0),
                  "completion_mask": (self.completion_mask, (b, n)), "loss_mask": (self.loss_mask, (b, n)),
                  "logprobs": (self.logprobs, (b, n)), "rewards": (self.rewards, (b,)),
                  "scorable": (self.scorable, (b,)), "group_index": (self.group_index, (b,)),
                  "finish_reason": (self.finish_reason, (b,)), "num_tool_calls": (self.num_tool_calls, (b,))}
        for name, (t, want) in checks.items():
            ok = t.shape[0] == b if want == 0 else tuple(t.shape) == want
            if not ok:
                raise ValueError(f"TextRollout.{name} has shape {tuple(t.shape)}; expected {want or ('B=' + str(b))}")

    @property
    def num_groups(self) -> int:
        return int(self.group_index.max()) + 1 if self.group_index.numel() else 0

    @property
    def completion_lengths(self) -> torch.Tensor:
        """Policy tokens per completion ``[B]``."""
        return self.loss_mask.sum(-1)


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


@dataclass(frozen=True)
class PreparedBlock:
    """What the gradient steps of an LM policy-gradient update need, computed once per generation block
    (``GRPO.prepare`` / ``LMPPO.prepare``). ``B`` completions of ``N`` completion tokens.

    ``mask [B, N]`` bool: tokens in the loss; ``old [B, N]``: behaviour log-probs; ``ref [B, N]``:
    reference log-probs (None: no reference); ``adv``: ``[B]`` sequence or ``[B, N]`` token advantages
    (0 for unscorable completions); ``beta``: the KL weight *in the loss* (0 when the KL is in the
    reward); LM-PPO also ``returns``/``old_values [B, N]`` (value targets, critic values at sampling).
    """

    mask: torch.Tensor
    old: torch.Tensor
    ref: torch.Tensor | None
    adv: torch.Tensor
    beta: float
    returns: torch.Tensor | None = None
    old_values: torch.Tensor | None = None

    def rows(self, idx: torch.Tensor) -> PreparedBlock:
        """The same block restricted to the completions ``idx`` (a minibatch)."""
        return dataclasses.replace(self, **{f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)
                                            if isinstance(getattr(self, f.name), torch.Tensor)})
