"""``TextCollector``: prompts -> G sampled completions per prompt -> guarded rewards -> ``TextRollout``.

The collector of every online language-model method (GRPO family, RLOO, ReMax, REINFORCE, PPO,
LOOP). One ``collect()`` is one *generation block*:

1. take the next ``prompts_per_step`` prompts of the training pool (seeded epoch permutations);
2. sample ``completions_per_prompt`` completions for each with the KV-cache sampler
   (:func:`policyopt.lm.sampling.sample`; each prompt is prefilled once, its cache shared by its group);
   with a multi-turn :class:`~policyopt.lm.textenv.TextEnv` (LOOP), run ``G`` episodes per task instead;
3. score them behind the :class:`~policyopt.lm.reward.RewardGuard` (unscorable -> NaN + mask, never 0);
4. with ``dynamic_sampling`` (DAPO) drop the groups whose rewards all tie and sample more prompts
   until the batch is full again (at most ``max_refill_rounds`` extra rounds);
5. with ``greedy_baseline`` (ReMax) also decode one greedy completion per prompt and score it.

``state_dict()`` holds the prompt-iterator position (epoch, position) and the sampler's
``torch.Generator`` state, so a resumed run samples exactly the completions the uninterrupted run
would have sampled. ``num_steps`` of a batch is the number of completions sampled (dropped groups
included): the trainer's step counter counts samples.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from policyopt.core.epochs import EpochIterator
from policyopt.core.memory import peak_rss_mb
from policyopt.core.seeding import generator_state, set_generator_state
from policyopt.data.text import FINISH_LENGTH, CollectConfig, TextRollout
from policyopt.lm.reward import RewardGuard, RewardResult
from policyopt.losses.group import group_statistics, informative_groups

"""``Samples.finish_reason`` of a completion cut at the token limit (``policyopt.lm.sampling``)."""


# ------------------------------------------------------------------------------ padding helpers
def _cat_left(tensors: Sequence[torch.Tensor], pad: Any) -> torch.Tensor:
    """Concatenate left-padded ``[b_i, P_i]`` blocks along rows, padding on the left to max width."""
    width = max(t.shape[1] for t in tensors)
    return torch.cat([torch.nn.functional.pad(t, (width - t.shape[1], 0), value=pad) for t in tensors])


def _cat_right(tensors: Sequence[torch.Tensor], pad: Any) -> torch.Tensor:
    """Concatenate right-padded ``[b_i, N_i]`` blocks along rows, padding on the right to max width."""
    width = max(t.shape[1] for t in tensors)
    return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=pad) for t in tensors])


@dataclass
class _Block:
    """Per-round sampling results before groups are selected and merged (tensors row-aligned)."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    loss_mask: torch.Tensor
    logprobs: torch.Tensor
    finish_reason: torch.Tensor
    num_tool_calls: torch.Tensor
    group: torch.Tensor
    reward: RewardResult
    greedy: RewardResult | None = None

    def select_groups(self, keep: torch.Tensor) -> _Block:
        """Rows of the groups where ``keep [num_groups]`` is True, groups renumbered from 0."""
        rows = keep[self.group]
        renumber = torch.cumsum(keep.long(), 0) - 1
        r = self.reward
        reward = dataclasses.replace(r, values=r.values[rows], scorable=r.scorable[rows], outcome=r.outcome[rows],
                                     components={k: v[rows] for k, v in r.components.items()})
        greedy = None
        if self.greedy is not None:
            g = self.greedy
            greedy = dataclasses.replace(g, values=g.values[keep], scorable=g.scorable[keep],
                                         outcome=g.outcome[keep], components={})
        return _Block(self.prompt_ids[rows], self.prompt_mask[rows], self.completion_ids[rows],
                      self.completion_mask[rows], self.loss_mask[rows], self.logprobs[rows],
                      self.finish_reason[rows], self.num_tool_calls[rows], renumber[self.group[rows]], reward, greedy)


class TextCollector:
    """Prompts -> sampled groups -> guarded rewards -> :class:`TextRollout` (see the module docstring).

    ``policy``: an :class:`~policyopt.lm.policy.LMPolicy`; ``examples``: the training pool
    (:class:`~policyopt.lm.tasks.TaskExample` s: ``prompt`` + ``metadata``); ``reward``: a
    :class:`RewardGuard` (or a bare reward function, then guarded here); ``seed`` seeds both the
    prompt order and the sampler. ``env_factory(example) -> TextEnv`` switches to multi-turn episodes
    (each of the G episodes of a group plays the same example). ``greedy_baseline`` adds ReMax's greedy
    completions.
    """

    def __init__(self, policy: Any, examples: Sequence[Any], reward: Any, config: CollectConfig | None = None,
                 seed: int = 0, *, env_factory: Any = None, greedy_baseline: bool = False):
        if not examples:
            raise ValueError("TextCollector needs at least one training example")
        self.policy, self.examples = policy, list(examples)
        self.guard = reward if isinstance(reward, RewardGuard) else RewardGuard(reward)
        self.config = config or CollectConfig()
        self.seed, self.env_factory, self.greedy_baseline = int(seed), env_factory, greedy_baseline
        if env_factory is not None and greedy_baseline:
            raise ValueError("greedy_baseline (ReMax) is not supported for multi-turn environments")
        self.generator = torch.Generator().manual_seed(self.seed)
        self.order = EpochIterator(len(self.examples), self.seed, owner="TextCollector")
        from policyopt.lm.sampling import SamplingConfig  # imports transformers: only when LM runs are built

        c = self.config
        self.sampling = SamplingConfig(max_new_tokens=c.max_new_tokens, temperature=c.temperature, top_k=c.top_k,
                                       top_p=c.top_p, samples_per_prompt=c.completions_per_prompt)

    # ---------------------------------------------------------------------------- prompt order
    def _next_prompts(self, n: int) -> list[Any]:
        return [self.examples[int(i)] for i in self.order.take(n)]

    # ---------------------------------------------------------------------------------- collect
    def collect(self) -> TextRollout:
        c = self.config
        t0 = time.perf_counter()
        blocks, kept, sampled, tokens, tied = [], 0, 0, 0, []
        rounds = 1 + (c.max_refill_rounds if c.dynamic_sampling else 0)
        for _ in range(rounds):
            block = last = self._sample_block(self._next_prompts(c.prompts_per_step))
            sampled += block.group.numel()
            tokens += int(block.loss_mask.sum())
            r = block.reward
            tied.append(group_statistics(r.values, r.scorable, block.group)["tied_fraction"])
            if c.dynamic_sampling:
                keep = informative_groups(r.values, r.scorable, block.group)
                keep &= torch.cumsum(keep.long(), 0) <= c.prompts_per_step - kept
                block = block.select_groups(keep) if int(keep.sum()) else None
            if block is not None:
                blocks.append(block)
                kept += int(block.group.max()) + 1
            if kept >= c.prompts_per_step:
                break
        if not blocks:  # no informative group in any round: keep the last one (zero advantages)
            blocks.append(last)
        seconds = time.perf_counter() - t0
        return self._merge(blocks, sampled, tokens, seconds, float(torch.stack(tied).mean()))

    def _sample_block(self, examples: list[Any]) -> _Block:
        if self.env_factory is not None:
            return self._episodes(examples)
        return self._serial(examples) if self.config.group_mode == "serial" else self._completions(examples)

    def _completions(self, examples: list[Any]) -> _Block:
        """Single-turn: one sampler call for the whole block (prompts prefilled once per group)."""
        policy, g = self.policy, self.config.completions_per_prompt
        prompt_ids = policy.encode_prompts([ex.prompt for ex in examples])
        samples = policy.sample(prompt_ids, self.sampling, self.generator)
        texts = policy.decode(samples)
        rep = [ex for ex in examples for _ in range(g)]
        reward = self.guard([ex.prompt for ex in rep], texts, [ex.metadata for ex in rep])
        greedy = None
        if self.greedy_baseline:
            greedy_cfg = dataclasses.replace(self.sampling, temperature=0.0, top_k=0, top_p=1.0, samples_per_prompt=1)
            best = policy.sample(prompt_ids, greedy_cfg, None)
            greedy = self.guard([ex.prompt for ex in examples], policy.decode(best),
                                [ex.metadata for ex in examples])
        b = samples.completion_ids.shape[0]
        return _Block(samples.prompt_ids, samples.prompt_mask, samples.completion_ids, samples.completion_mask,
                      samples.completion_mask.clone(), samples.logprobs, samples.finish_reason,
                      torch.zeros(b, dtype=torch.long), samples.prompt_index, reward, greedy)

    def _serial(self, examples: list[Any]) -> _Block:
        """S-GRPO serial groups (Dai et al., 2025): member k of a prompt's group is the sampled path
        cut after ``round(k * L / m)`` of its ``L`` tokens, then ``exit_text`` (masked out of the loss),
        then a sampled answer; member ``m`` is the full path. Members are ordered by exit position."""
        policy, m, pad = self.policy, self.config.serial_exits, self.policy.pad_token_id
        prompt_ids = policy.encode_prompts([ex.prompt for ex in examples])
        one = dataclasses.replace(self.sampling, samples_per_prompt=1)
        paths = policy.sample(prompt_ids, one, self.generator)
        exit_ids = list(policy.tokenizer(self.config.exit_text, add_special_tokens=False).input_ids)
        seqs = paths.completion_lists()
        cuts = [[round(k * len(y) / m) for k in range(1, m)] for y in seqs]
        contexts = [prompt_ids[i] + seqs[i][:c] + exit_ids for i in range(len(seqs)) for c in cuts[i]]
        answers = policy.sample(contexts, one, self.generator)
        ans = answers.completion_lists()
        rows, masks, lps, finish = [], [], [], []
        for i, y in enumerate(seqs):
            for k, c in enumerate(cuts[i]):  # early exits: path prefix, exit text, answer
                j = i * (m - 1) + k
                a = ans[j]
                rows.append(y[:c] + exit_ids + a)
                masks.append([True] * c + [False] * len(exit_ids) + [True] * len(a))
                lps.append(paths.logprobs[i, :c].tolist() + [0.0] * len(exit_ids)
                           + answers.logprobs[j, :len(a)].tolist())
                finish.append(int(answers.finish_reason[j]))
            rows.append(list(y))  # the full path closes the group
            masks.append([True] * len(y))
            lps.append(paths.logprobs[i, :len(y)].tolist())
            finish.append(int(paths.finish_reason[i]))
        width = max(1, max(len(r) for r in rows))
        completion = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
        cmask = torch.tensor([[True] * len(r) + [False] * (width - len(r)) for r in rows])
        loss_mask = torch.tensor([mk + [False] * (width - len(mk)) for mk in masks])
        logprobs = torch.tensor([lp + [0.0] * (width - len(lp)) for lp in lps])
        group = torch.arange(len(examples)).repeat_interleave(m)
        texts = policy.tokenizer.batch_decode(rows, skip_special_tokens=True)
        rep = [ex for ex in examples for _ in range(m)]
        reward = self.guard([ex.prompt for ex in rep], texts, [ex.metadata for ex in rep])
        return _Block(paths.prompt_ids[group], paths.prompt_mask[group], completion, cmask, loss_mask, logprobs,
                      torch.tensor(finish), torch.zeros(len(rows), dtype=torch.long), group, reward)

    def _episodes(self, examples: list[Any]) -> _Block:
        """Multi-turn: G episodes per example through :func:`policyopt.lm.textenv.rollout`."""
        from policyopt.lm.textenv import collate, rollout

        g, policy = self.config.completions_per_prompt, self.policy
        envs = [self.env_factory(ex) for ex in examples for _ in range(g)]
        stops = tuple(sorted({s for env in envs for s in env.stop_strings}))
        cfg = dataclasses.replace(self.sampling, samples_per_prompt=1, stop_strings=stops)
        trajs = rollout(lambda ctx: policy.sample(ctx, cfg, self.generator), envs, seeds=[0] * len(envs),
                        max_turns=self.config.max_turns)
        batch = collate(trajs, policy.pad_token_id)
        values = batch.rewards.float()
        scorable = torch.isfinite(values)
        reward = RewardResult(values=torch.where(scorable, values, torch.nan), scorable=scorable,
                              components={"correct": torch.tensor([float(bool(t.info.get("correct", False)))
                                                                   for t in trajs])},
                              outcome=torch.zeros(len(trajs), dtype=torch.int8), num_none=0, num_errors=0)
        finish = torch.tensor([0 if t.truncated else 1 for t in trajs])
        tool_calls = torch.tensor([sum(1 for _ in t.turn_rewards) - (1 if t.terminated else 0) for t in trajs])
        group = torch.arange(len(examples)).repeat_interleave(g)
        return _Block(batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask,
                      batch.policy_mask, batch.logprobs, finish, tool_calls, group, reward)

    def _merge(self, blocks: list[_Block], sampled: int, tokens: int, seconds: float, tied_frac: float) -> TextRollout:
        pad = self.policy.pad_token_id
        offsets = np.cumsum([0] + [int(b.group.max()) + 1 for b in blocks])
        cat = torch.cat
        rewards = cat([b.reward.values for b in blocks])
        scorable = cat([b.reward.scorable for b in blocks])
        components = {k: cat([b.reward.components[k] for b in blocks]) for k in blocks[0].reward.components}
        greedy_r = greedy_s = None
        if blocks[0].greedy is not None:
            greedy_r, greedy_s = cat([b.greedy.values for b in blocks]), cat([b.greedy.scorable for b in blocks])
        loss_mask = _cat_right([b.loss_mask for b in blocks], False)
        finish = cat([b.finish_reason for b in blocks])
        metrics = self._metrics(rewards, scorable, components, loss_mask, sampled, tokens, seconds, tied_frac, finish)
        metrics["stats/kept_groups"] = float(offsets[-1])
        return TextRollout(
            prompt_ids=_cat_left([b.prompt_ids for b in blocks], pad),
            prompt_mask=_cat_left([b.prompt_mask for b in blocks], False),
            completion_ids=_cat_right([b.completion_ids for b in blocks], pad),
            completion_mask=_cat_right([b.completion_mask for b in blocks], False),
            loss_mask=loss_mask, logprobs=_cat_right([b.logprobs for b in blocks], 0.0),
            rewards=rewards, scorable=scorable, components=components,
            group_index=cat([b.group + int(off) for b, off in zip(blocks, offsets)]),
            finish_reason=finish, num_tool_calls=cat([b.num_tool_calls for b in blocks]),
            num_steps=int(sampled), metrics=metrics, greedy_rewards=greedy_r, greedy_scorable=greedy_s)

    def _metrics(self, rewards, scorable, components, loss_mask, sampled, tokens, seconds, tied_frac, finish) -> dict:
        ok = rewards[scorable]
        out = {"reward/mean": float(ok.mean()) if ok.numel() else float("nan"),
               "reward/std": float(ok.std()) if ok.numel() > 1 else 0.0,
               "reward/unscorable_frac": 1.0 - float(scorable.float().mean()),
               "stats/tied_group_frac": tied_frac,
               "lm/completion_len_mean": float(loss_mask.sum()) / max(1, loss_mask.shape[0]),
               "lm/truncated_frac": float((finish == FINISH_LENGTH).float().mean()),
               "time/samples_per_s": sampled / max(seconds, 1e-9),
               "time/tokens_per_s": tokens / max(seconds, 1e-9),
               "time/generate_s": seconds, "mem/peak_rss_mb": peak_rss_mb()}
        for name, vals in components.items():
            good = ~torch.isnan(vals)
            out[f"reward/{name}"] = float(vals[good].mean()) if bool(good.any()) else float("nan")
        # rewards that execute code report per-verdict fractions (sandbox/verdict/...) of their last batch
        extra = getattr(self.guard.fn, "last_metrics", None)
        if isinstance(extra, dict):
            out.update({k: float(v) for k, v in extra.items() if k not in out})
        return out

    # ------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        g = self.guard
        return {**self.order.state_dict(), "generator": generator_state(self.generator),
                "guard": {"total_examples": g.total_examples, "total_none": g.total_none,
                          "total_errors": g.total_errors, "total_unscorable": g.total_unscorable}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order.load_state_dict(state)
        set_generator_state(self.generator, state["generator"])
        for key, value in state.get("guard", {}).items():
            setattr(self.guard, key, int(value))


__all__ = ["TextCollector"]
