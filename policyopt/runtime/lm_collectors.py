"""The collectors of the preference and SFT methods: offline pairs/lists with cached reference
log-probs (``PreferenceCollector``), fresh pairs judged by a truth or a reward model
(``OnlinePairCollector``, ``TruthJudge``, ``RewardJudge``), MPO's two-stage collector (``MPOCollector``)
and tokenised SFT batches (``SFTCollector``). Every collector of the library lives in ``runtime/``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from policyopt.core.epochs import EpochIterator
from policyopt.data.preference import OnlineGroups
from policyopt.data.text import SFTBatch, SFTDataConfig


class PreferenceCollector:
    """Seeded epoch shuffles over a pair or list table with cached reference log-probs.

    Epoch ``e`` visits rows in ``default_rng([seed, e]).permutation(N)``; a batch crossing an epoch
    boundary continues into the next epoch. ``state_dict = {seed, epoch, position, num_examples}``.
    """

    def __init__(self, table: Any, reference: np.ndarray | None, batch_size: int, seed: int = 0):
        if len(table) == 0:
            raise ValueError("PreferenceCollector: empty data table")
        self.table, self.reference, self.batch_size, self.seed = table, reference, batch_size, seed
        self.order = EpochIterator(len(table), seed, owner="PreferenceCollector")

    def next_index(self) -> np.ndarray:
        return self.order.take(self.batch_size)

    def collect(self) -> Any:
        from policyopt.data.preference import PairTable, list_batch, pair_batch

        index = self.next_index()
        make = pair_batch if isinstance(self.table, PairTable) else list_batch
        return make(self.table, index, self.reference)

    def state_dict(self) -> dict[str, Any]:
        return self.order.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order.load_state_dict(state)


class TruthJudge:
    """A known (possibly intransitive) preference as a judge."""

    def __init__(self, truth: Any):
        self.truth = truth

    def preference(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        return self.truth.preference(a, b, prompts)


class RewardJudge:
    """A ``RewardFn`` as a judge: :math:`P(a > b) = \\sigma((r_a - r_b) / T)`; unscorable (None/NaN) -> 0.5."""

    def __init__(self, reward_fn: Any, temperature: float = 1.0):
        self.reward_fn, self.temperature = reward_fn, temperature

    def preference(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        def score(texts):
            return np.array([np.nan if r is None else float(r) for r in self.reward_fn(list(prompts), list(texts))])

        d = (score(a) - score(b)) / self.temperature
        return np.where(np.isfinite(d), 1.0 / (1.0 + np.exp(-np.nan_to_num(d))), 0.5)


class OnlinePairCollector:
    """Samples ``G`` completions per prompt from the current policy and asks ``judge`` for preferences.

    Prompt order: seeded epoch permutations; sampling: its own ``torch.Generator``. Both are in
    ``state_dict`` for exact resume. ``num_steps`` of a batch = completions sampled.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], judge: Any,
                 prompts_per_step: int, group: int, max_new_tokens: int, temperature: float = 1.0, seed: int = 0):
        if not prompts:
            raise ValueError("OnlinePairCollector needs prompts")
        self.model, self.tokenizer, self.prompts, self.judge = model, tokenizer, list(prompts), judge
        self.per_step, self.group, self.seed = prompts_per_step, group, seed
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.generator = torch.Generator().manual_seed(int(seed))
        self.order = EpochIterator(len(self.prompts), seed, owner="OnlinePairCollector")

    def _next_prompts(self) -> list[str]:
        return [self.prompts[int(i)] for i in self.order.take(self.per_step)]

    def collect(self) -> OnlineGroups:
        from policyopt.lm.sampling import SamplingConfig, sample

        prompts, g = self._next_prompts(), self.group
        tok = self.tokenizer
        cfg = SamplingConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature, samples_per_prompt=g)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        s = sample(self.model, [list(x) for x in tok(prompts)["input_ids"]], cfg, generator=self.generator,
                   pad_token_id=int(pad), eos_token_ids=[int(tok.eos_token_id)])
        texts = tok.batch_decode(s.completion_lists(), skip_special_tokens=True)
        groups = [texts[i * g:(i + 1) * g] for i in range(len(prompts))]
        a = [x[i] for x in groups for i in range(g) for _ in range(g)]
        b = [x[j] for x in groups for _ in range(g) for j in range(g)]
        rep = [p for p in prompts for _ in range(g * g)]
        prefs = torch.as_tensor(self.judge.preference(rep, a, b), dtype=torch.float32).reshape(len(prompts), g, g)
        return OnlineGroups(s.prompt_ids, s.prompt_mask, s.completion_ids, s.completion_mask, texts, prefs,
                            len(texts))

    def state_dict(self) -> dict[str, Any]:
        return {**self.order.state_dict(), "generator": self.generator.get_state().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order.load_state_dict(state)
        self.generator.set_state(state["generator"])


class MPOCollector:
    """``dpo_updates`` batches from the easy-pair collector, then text rollouts on the hard prompts."""

    def __init__(self, offline: Any, online: Any, dpo_updates: int):
        self.offline, self.online, self.dpo_updates, self.served = offline, online, dpo_updates, 0

    def collect(self) -> Any:
        self.served += 1
        return self.offline.collect() if self.served <= self.dpo_updates else self.online.collect()

    def state_dict(self) -> dict[str, Any]:
        return {"served": self.served, "offline": self.offline.state_dict(), "online": self.online.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.served = int(state["served"])
        self.offline.load_state_dict(state["offline"])
        self.online.load_state_dict(state["online"])


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
        self.order = EpochIterator(self.num_examples, self.config.seed, self._permutation, owner="SFTCollector")

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
        index = self.order.take(self.config.batch_size)
        width = int(self.lengths[index].max())
        attention = np.arange(width)[None, :] < self.lengths[index][:, None]
        return SFTBatch(input_ids=torch.from_numpy(self.ids[index, :width]),
                        attention_mask=torch.from_numpy(attention).long(),
                        loss_mask=torch.from_numpy(self.completion_mask[index, :width]),
                        num_steps=int(index.size))

    def state_dict(self) -> dict[str, Any]:
        return self.order.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order.load_state_dict(state)


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
