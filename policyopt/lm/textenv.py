"""Multi-turn text environments, token-in / token-out, in the Gymnasium spirit.

A :class:`TextEnv` speaks token ids, never text, at its boundary::

    prompt_ids, info = env.reset(seed=0)
    observation_ids, reward, terminated, truncated, info = env.step(completion_ids)

so the trajectory the policy is trained on is exactly the tokens it sampled plus the tokens the
environment returned. Decoding a trajectory and re-tokenising it can change the ids (a tag split
into characters becomes one tag token, merges change at boundaries: trl#5224, verl#6501); here that
can never happen because nothing is re-tokenised. The environment may *read* the completion as
text (it decodes it), but it only ever *emits* fresh observation tokens.

:class:`CalculatorEnv` is the built-in tool environment: arithmetic tasks where the model may write
``<calc>12*7</calc>`` and gets ``<result>84</result>`` back (evaluated with a whitelist over the
``ast`` tree, never ``eval``), then answers ``<answer>84</answer>``.

:func:`rollout` runs a batch of multi-turn episodes with the batched sampler (all live episodes
sample their next turn in one call) and :func:`collate` turns the trajectories into padded tensors
with a mask of the policy's own tokens.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol, runtime_checkable

import torch

from policyopt.lm.logprobs import left_pad
from policyopt.lm.sampling import Samples

StepResult = tuple[list[int], float, bool, bool, dict[str, Any]]


@runtime_checkable
class TextEnv(Protocol):
    """Token-in / token-out episodic environment. ``stop_strings`` end a policy turn early."""

    stop_strings: tuple[str, ...]

    def reset(self, *, seed: int | None = None) -> tuple[list[int], dict[str, Any]]:
        """Start an episode: ``(prompt token ids, info)``."""
        ...

    def step(self, completion_ids: Sequence[int]) -> StepResult:
        """Consume the policy's turn: ``(observation ids, reward, terminated, truncated, info)``.
        The observation is empty when the episode ends."""
        ...


# ------------------------------------------------------------------------------- calculator
_CALL_RE = re.compile(r"<calc>(.*?)</calc>\s*$", re.DOTALL)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
MAX_EXPRESSION_CHARS = 64


def calculate(expression: str) -> str:
    """Evaluate ``+ - * /`` and parentheses over integers exactly; ``"error"`` for anything else.

    Parsed with :mod:`ast` and walked through a whitelist (no names, calls, attributes, powers).
    Integral results print as integers, others as a decimal with up to 6 significant digits.
    """
    from policyopt.lm.tasks import evaluate_expression

    if len(expression) > MAX_EXPRESSION_CHARS:
        return "error"
    result = evaluate_expression(_unary_minus(expression))
    if result is None:
        return "error"
    value: Fraction = result[0]
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.6g}"


def _unary_minus(expression: str) -> str:
    """``-3*2`` -> ``(0-3)*2``: the shared evaluator accepts binary operators only."""
    return re.sub(r"(^|[(*/+-])\s*-\s*(\d+)", r"\1(0-\2)", expression.strip())


@dataclass
class CalculatorEnv:
    """Arithmetic tasks with a calculator tool, token-in / token-out.

    ``tokenizer``: the policy's tokenizer; ``examples``: task examples with ``prompt``, ``answer`` and
    ``metadata`` (e.g. :func:`policyopt.lm.tasks.generate`); ``max_turns``: policy turns before the
    episode is truncated; ``instructions``: text put before each problem. Reward: 1 for a correct
    ``<answer>`` (checked with :func:`policyopt.lm.tasks.check_answer`), else 0; tool calls earn 0.
    """

    tokenizer: Any
    examples: Sequence[Any]
    max_turns: int = 4
    instructions: str = ""
    stop_strings: tuple[str, ...] = ("</calc>",)
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _example: Any = field(default=None, repr=False)
    _turn: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if not self.examples:
            raise ValueError("CalculatorEnv: examples must not be empty")
        if self.max_turns < 1:
            raise ValueError(f"CalculatorEnv: max_turns must be >= 1, got {self.max_turns}")

    def reset(self, *, seed: int | None = None) -> tuple[list[int], dict[str, Any]]:
        if seed is not None:
            self._rng = random.Random(seed)
        self._example = self.examples[self._rng.randrange(len(self.examples))]
        self._turn = 0
        prompt = list(self.tokenizer(self.instructions + self._example.prompt).input_ids)
        return prompt, {"answer": self._example.answer, "metadata": dict(self._example.metadata)}

    def step(self, completion_ids: Sequence[int]) -> StepResult:
        if self._example is None:
            raise RuntimeError("CalculatorEnv.step called before reset")
        self._turn += 1
        text = self.tokenizer.decode(list(completion_ids), skip_special_tokens=False)
        answers = _ANSWER_RE.findall(text)
        call = _CALL_RE.search(text)
        if call is not None and not answers:
            value = calculate(call.group(1))
            info = {"tool_call": call.group(1), "tool_result": value, "turn": self._turn}
            if self._turn >= self.max_turns:
                return [], 0.0, False, True, info
            observation = f"<result>{value}</result>"
            return list(self.tokenizer(observation, add_special_tokens=False).input_ids), 0.0, False, False, info
        from policyopt.lm.tasks import check_answer

        answer = answers[-1].strip() if answers else None
        correct = answer is not None and check_answer(answer, self._example.metadata)
        return [], float(correct), True, False, {"answer": answer, "correct": correct, "turn": self._turn}


# ---------------------------------------------------------------------------------- rollout
@dataclass(frozen=True)
class Trajectory:
    """One multi-turn episode. ``token_ids`` = prompt, then each turn's completion and observation.

    ``policy_mask[i]`` is True where the policy sampled ``token_ids[i]``; ``logprobs``/``raw_logprobs``
    (same length, 0 elsewhere) are the sampler's behaviour / temperature-1 log-probs.
    """

    token_ids: list[int]
    policy_mask: list[bool]
    prompt_length: int
    logprobs: list[float]
    raw_logprobs: list[float]
    turn_rewards: list[float]
    terminated: bool
    truncated: bool
    info: dict[str, Any]

    @property
    def reward(self) -> float:
        return float(sum(self.turn_rewards))


@dataclass(frozen=True)
class TextTrajectories:
    """Padded batch of trajectories: the prompt ``[B, P]`` left-padded, everything after it ``[B, N]``
    right-padded (``completion_mask``: real tokens; ``policy_mask``: sampled by the policy, the loss
    mask), ``logprobs``/``raw_logprobs [B, N]``, ``rewards [B]``, ``num_turns [B]``."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    policy_mask: torch.Tensor
    logprobs: torch.Tensor
    raw_logprobs: torch.Tensor
    rewards: torch.Tensor
    num_turns: torch.Tensor


def rollout(sampler: Callable[[list[list[int]]], Samples], envs: Sequence[TextEnv], *,
            seeds: Sequence[int | None] | None = None, max_turns: int = 8) -> list[Trajectory]:
    """Run one episode per env; every turn, all live episodes are sampled in one batched call.

    ``sampler(contexts) -> Samples`` gets the full token context of each live episode and must
    return one completion per context (e.g. ``lambda ctx: policy.sample(ctx, config, generator)``
    with ``config.stop_strings`` including the envs' ``stop_strings``). ``max_turns`` caps the turns
    even if an env never ends (the episode is then marked truncated).
    """
    seeds = list(seeds) if seeds is not None else [None] * len(envs)
    if len(seeds) != len(envs):
        raise ValueError(f"rollout: {len(seeds)} seeds for {len(envs)} envs")
    tokens, policy, lps, raws, rewards, infos = [], [], [], [], [], []
    prompt_lengths = []
    for env, seed in zip(envs, seeds):
        prompt, info = env.reset(seed=seed)
        tokens.append(list(prompt))
        policy.append([False] * len(prompt))
        lps.append([0.0] * len(prompt))
        raws.append([0.0] * len(prompt))
        rewards.append([])
        infos.append(dict(info))
        prompt_lengths.append(len(prompt))
    done = [[False, False] for _ in envs]  # terminated, truncated
    live = list(range(len(envs)))
    for turn in range(max_turns):
        if not live:
            break
        samples = sampler([list(tokens[i]) for i in live])
        if samples.completion_ids.shape[0] != len(live):
            raise ValueError(f"rollout: the sampler returned {samples.completion_ids.shape[0]} completions for "
                             f"{len(live)} contexts (use samples_per_prompt=1)")
        completions = samples.completion_lists()
        still = []
        for row, i in enumerate(live):
            n = len(completions[row])
            obs, reward, terminated, truncated, info = envs[i].step(completions[row])
            truncated = truncated or (turn == max_turns - 1 and not terminated)
            tokens[i] += completions[row] + list(obs)
            policy[i] += [True] * n + [False] * len(obs)
            lps[i] += samples.logprobs[row, :n].tolist() + [0.0] * len(obs)
            raws[i] += samples.raw_logprobs[row, :n].tolist() + [0.0] * len(obs)
            rewards[i].append(float(reward))
            infos[i].update(info)
            done[i] = [bool(terminated), bool(truncated)]
            if not (terminated or truncated):
                still.append(i)
        live = still
    return [Trajectory(tokens[i], policy[i], prompt_lengths[i], lps[i], raws[i], rewards[i], done[i][0], done[i][1],
                       infos[i]) for i in range(len(envs))]


def collate(trajectories: Sequence[Trajectory], pad_token_id: int) -> TextTrajectories:
    """Pad trajectories into a :class:`TextTrajectories` batch (ready for ``completion_logprobs``)."""
    if not trajectories:
        raise ValueError("collate: no trajectories")
    prompt_ids, prompt_mask = left_pad([t.token_ids[: t.prompt_length] for t in trajectories], pad_token_id)
    width = max(max(len(t.token_ids) - t.prompt_length for t in trajectories), 1)
    shape = (len(trajectories), width)
    completion_ids = torch.full(shape, int(pad_token_id), dtype=torch.long)
    completion_mask = torch.zeros(shape, dtype=torch.bool)
    policy_mask = torch.zeros(shape, dtype=torch.bool)
    logprobs, raw = torch.zeros(shape), torch.zeros(shape)
    for row, t in enumerate(trajectories):
        n = len(t.token_ids) - t.prompt_length
        completion_ids[row, :n] = torch.as_tensor(t.token_ids[t.prompt_length:], dtype=torch.long)
        completion_mask[row, :n] = True
        policy_mask[row, :n] = torch.as_tensor(t.policy_mask[t.prompt_length:], dtype=torch.bool)
        logprobs[row, :n] = torch.as_tensor(t.logprobs[t.prompt_length:])
        raw[row, :n] = torch.as_tensor(t.raw_logprobs[t.prompt_length:])
    rewards = torch.tensor([t.reward for t in trajectories])
    turns = torch.tensor([len(t.turn_rewards) for t in trajectories])
    return TextTrajectories(prompt_ids, prompt_mask, completion_ids, completion_mask, policy_mask, logprobs, raw,
                            rewards, turns)


def info_summary(trajectories: Sequence[Trajectory]) -> Mapping[str, float]:
    """Mean reward, turns, and the terminated / truncated fractions of a batch of episodes."""
    n = max(len(trajectories), 1)
    return {"reward/mean": sum(t.reward for t in trajectories) / n,
            "episode/turns": sum(len(t.turn_rewards) for t in trajectories) / n,
            "episode/terminated": sum(t.terminated for t in trajectories) / n,
            "episode/truncated": sum(t.truncated for t in trajectories) / n}


__all__ = ["CalculatorEnv", "TextEnv", "TextTrajectories", "Trajectory", "calculate", "collate", "info_summary",
           "rollout"]
