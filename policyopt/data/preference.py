"""Preference data: typed batches, loaders, and synthetic data with a known ground truth.

Three layers, from text to tensors:

- **records** (text): :class:`PreferenceRecords` (prompt, chosen, rejected) and :class:`RankedRecords`
  (prompt, K completions, graded labels; higher = better). Load them from JSONL
  (:func:`load_pairs_jsonl`, :func:`load_lists_jsonl`) or from a ``datasets.Dataset``
  (:func:`pairs_from_hf`, :func:`lists_from_hf`), or generate them (:func:`synthetic_pairs`,
  :func:`synthetic_lists`).
- **token tables** (numpy, tokenised once): :class:`PairTable` / :class:`ListTable`: prompts
  left-padded ``[N, P]``, completions right-padded ``[N, L]`` (``[N, K, L]`` for lists) with EOS.
- **batches** (torch, one per update): :class:`PreferencePairs` and :class:`RankedLists`, trimmed to
  the longest row of the batch, carrying cached reference sequence log-probs when available.

Synthetic data with a known ground truth lives in :mod:`policyopt.lm.synthetic_preference`
(re-exported here).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# ------------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class PreferenceRecords:
    """Text pairs. ``true_prob [N]`` (optional): ``P(chosen > rejected)`` under a known truth;
    ``flipped [N]`` (optional): the label was flipped by injected noise."""

    prompts: list[str]
    chosen: list[str]
    rejected: list[str]
    true_prob: np.ndarray | None = None
    flipped: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.prompts)
        if not n:
            raise ValueError("PreferenceRecords: no pairs")
        if len(self.chosen) != n or len(self.rejected) != n:
            raise ValueError(f"PreferenceRecords: {n} prompts but {len(self.chosen)} chosen and "
                             f"{len(self.rejected)} rejected")
        for name in ("true_prob", "flipped"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"PreferenceRecords.{name} has {len(value)} entries for {n} pairs")

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, index: Sequence[int] | np.ndarray) -> PreferenceRecords:
        idx = np.asarray(index, dtype=np.int64)
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        opt = lambda a: None if a is None else np.asarray(a)[idx]  # noqa: E731
        return PreferenceRecords(pick(self.prompts), pick(self.chosen), pick(self.rejected),
                                 opt(self.true_prob), opt(self.flipped))


@dataclass(frozen=True)
class RankedRecords:
    """Text lists: ``completions[i]`` are the candidates for ``prompts[i]`` with graded ``labels[i]``
    (higher = better; lists may have different lengths, each >= 2)."""

    prompts: list[str]
    completions: list[list[str]]
    labels: list[list[float]]

    def __post_init__(self) -> None:
        n = len(self.prompts)
        if not n or len(self.completions) != n or len(self.labels) != n:
            raise ValueError(f"RankedRecords: {n} prompts, {len(self.completions)} lists, {len(self.labels)} labels")
        for i, (c, lab) in enumerate(zip(self.completions, self.labels)):
            if len(c) < 2 or len(c) != len(lab):
                raise ValueError(f"RankedRecords: list {i} has {len(c)} completions and {len(lab)} labels "
                                 "(need >= 2 and equal)")

    def __len__(self) -> int:
        return len(self.prompts)


def _records_from_rows(rows: Sequence[Mapping[str, Any]], keys: tuple[str, str, str], where: str) -> PreferenceRecords:
    out: tuple[list[str], list[str], list[str]] = ([], [], [])
    for i, row in enumerate(rows):
        for key, sink in zip(keys, out):
            value = row.get(key) if isinstance(row, Mapping) else None
            if not isinstance(value, str):
                raise ValueError(f"{where}: row {i}: field {key!r} must be a string (got {type(value).__name__})")
            sink.append(value)
    return PreferenceRecords(*out)


def _lists_from_rows(rows: Sequence[Mapping[str, Any]], keys: tuple[str, str, str], where: str) -> RankedRecords:
    prompts, comps, labels = [], [], []
    pk, ck, lk = keys
    for i, row in enumerate(rows):
        p, c, lab = row.get(pk), row.get(ck), row.get(lk)
        if not isinstance(p, str) or not isinstance(c, list) or not isinstance(lab, list):
            raise ValueError(f"{where}: row {i}: need {pk!r} (string), {ck!r} and {lk!r} (lists)")
        if not all(isinstance(x, str) for x in c) or not all(isinstance(x, (int, float)) for x in lab):
            raise ValueError(f"{where}: row {i}: {ck!r} must hold strings and {lk!r} numbers")
        prompts.append(p)
        comps.append(list(c))
        labels.append([float(x) for x in lab])
    return RankedRecords(prompts, comps, labels)


def _read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"preference data file not found: {path}")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: not valid JSON: {err}") from None
    return rows


def load_pairs_jsonl(path: str | Path, prompt_key: str = "prompt", chosen_key: str = "chosen",
                     rejected_key: str = "rejected") -> PreferenceRecords:
    """Pairs from a JSONL file with one ``{"prompt", "chosen", "rejected"}`` object per line."""
    return _records_from_rows(_read_jsonl(path), (prompt_key, chosen_key, rejected_key), str(path))


def load_lists_jsonl(path: str | Path, prompt_key: str = "prompt", completions_key: str = "completions",
                     labels_key: str = "labels") -> RankedRecords:
    """Ranked lists from JSONL: ``{"prompt": str, "completions": [str], "labels": [number]}`` per line."""
    return _lists_from_rows(_read_jsonl(path), (prompt_key, completions_key, labels_key), str(path))


def pairs_from_hf(dataset: Any, prompt_key: str = "prompt", chosen_key: str = "chosen",
                  rejected_key: str = "rejected") -> PreferenceRecords:
    """Pairs from a ``datasets.Dataset`` (or any sequence of mappings) with string columns."""
    return _records_from_rows(list(dataset), (prompt_key, chosen_key, rejected_key), "dataset")


def lists_from_hf(dataset: Any, prompt_key: str = "prompt", completions_key: str = "completions",
                  labels_key: str = "labels") -> RankedRecords:
    """Ranked lists from a ``datasets.Dataset`` with a string column and two list columns."""
    return _lists_from_rows(list(dataset), (prompt_key, completions_key, labels_key), "dataset")


def save_pairs_jsonl(records: PreferenceRecords, path: str | Path) -> None:
    with Path(path).open("w") as f:
        for p, c, r in zip(records.prompts, records.chosen, records.rejected):
            f.write(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n")


# ------------------------------------------------------------------------------------ token tables


def _encode(tokenizer: Any, texts: list[str], special: bool) -> list[list[int]]:
    return [list(x) for x in tokenizer(texts, add_special_tokens=special)["input_ids"]]


def _pad(seqs: list[list[int]], pad_id: int, left: bool) -> tuple[np.ndarray, np.ndarray]:
    """Ragged lists -> ``(ids [N, W] int64, mask [N, W] bool)``, left- or right-aligned, vectorised."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    width = max(int(lengths.max()), 1)
    cols = np.arange(width)
    mask = cols[None, :] >= (width - lengths)[:, None] if left else cols[None, :] < lengths[:, None]
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    ids[mask] = np.fromiter((t for s in seqs for t in s), dtype=np.int64, count=int(lengths.sum()))
    return ids, mask


def _tokenizer_ids(tokenizer: Any) -> tuple[int, int]:
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    if eos is None:
        raise ValueError("the tokenizer has no EOS token (completions end with EOS)")
    return int(pad), int(eos)


def _encode_completions(tokenizer: Any, texts: list[str], max_length: int, prompt_lens: np.ndarray,
                        what: str) -> list[list[int]]:
    _, eos = _tokenizer_ids(tokenizer)
    out = [c + [eos] for c in _encode(tokenizer, texts, False)]
    lengths = np.array([len(c) for c in out]) + prompt_lens
    if np.any(lengths > max_length):
        i = int(np.flatnonzero(lengths > max_length)[0])
        raise ValueError(f"{what} {i} has {lengths[i]} tokens (prompt + completion + EOS) > max_length={max_length}")
    return out


@dataclass(frozen=True)
class PairTable:
    """Tokenised pairs: ``prompt_ids/prompt_mask [N, P]`` left-padded (with BOS), ``chosen_*`` and
    ``rejected_* [N, L]`` right-padded (with EOS, same width ``L``)."""

    prompt_ids: np.ndarray
    prompt_mask: np.ndarray
    chosen_ids: np.ndarray
    chosen_mask: np.ndarray
    rejected_ids: np.ndarray
    rejected_mask: np.ndarray

    def __len__(self) -> int:
        return int(self.prompt_ids.shape[0])

    @classmethod
    def from_records(cls, records: PreferenceRecords, tokenizer: Any, max_length: int = 512) -> PairTable:
        pad, _ = _tokenizer_ids(tokenizer)
        prompts = _encode(tokenizer, records.prompts, True)
        p_len = np.array([len(p) for p in prompts])
        chosen = _encode_completions(tokenizer, records.chosen, max_length, p_len, "chosen completion of pair")
        rejected = _encode_completions(tokenizer, records.rejected, max_length, p_len, "rejected completion of pair")
        p_ids, p_mask = _pad(prompts, pad, left=True)
        both_ids, both_mask = _pad(chosen + rejected, pad, left=False)
        n = len(records)
        return cls(p_ids, p_mask, both_ids[:n], both_mask[:n], both_ids[n:], both_mask[n:])


@dataclass(frozen=True)
class ListTable:
    """Tokenised ranked lists: ``prompt_* [N, P]``, ``completion_* [N, K, L]``, ``list_mask [N, K]``
    (False = padding item), ``labels [N, K]`` float32 (higher = better)."""

    prompt_ids: np.ndarray
    prompt_mask: np.ndarray
    completion_ids: np.ndarray
    completion_mask: np.ndarray
    list_mask: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.prompt_ids.shape[0])

    @classmethod
    def from_records(cls, records: RankedRecords, tokenizer: Any, max_length: int = 512) -> ListTable:
        pad, _ = _tokenizer_ids(tokenizer)
        prompts = _encode(tokenizer, records.prompts, True)
        sizes = np.array([len(c) for c in records.completions])
        k = int(sizes.max())
        p_len = np.repeat(np.array([len(p) for p in prompts]), sizes)
        flat = _encode_completions(tokenizer, [c for cs in records.completions for c in cs], max_length, p_len,
                                   "list completion")
        c_ids, c_mask = _pad(flat, pad, left=False)
        list_mask = np.arange(k)[None, :] < sizes[:, None]
        ids = np.full((len(records), k, c_ids.shape[1]), pad, dtype=np.int64)
        mask = np.zeros(ids.shape, dtype=bool)
        ids[list_mask], mask[list_mask] = c_ids, c_mask
        labels = np.zeros((len(records), k), dtype=np.float32)
        labels[list_mask] = np.fromiter((x for lab in records.labels for x in lab), dtype=np.float32)
        p_ids, p_mask = _pad(prompts, pad, left=True)
        return cls(p_ids, p_mask, ids, mask, list_mask, labels)


# ------------------------------------------------------------------------------------------ batches


@dataclass(frozen=True)
class PreferencePairs:
    """One batch of pairs. ``prompt_* [B, P]`` left-padded; ``chosen_*``/``rejected_* [B, L]``
    right-padded; ``ref_chosen``/``ref_rejected [B]`` cached reference sequence log-probs (or None);
    ``index [B]`` rows of the source table; ``num_steps`` = pairs."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    chosen_ids: torch.Tensor
    chosen_mask: torch.Tensor
    rejected_ids: torch.Tensor
    rejected_mask: torch.Tensor
    ref_chosen: torch.Tensor | None
    ref_rejected: torch.Tensor | None
    index: torch.Tensor
    num_steps: int

    def __post_init__(self) -> None:
        b = self.prompt_ids.shape[0]
        if self.chosen_ids.shape != self.rejected_ids.shape or self.chosen_ids.shape[0] != b:
            raise ValueError(f"PreferencePairs: prompt batch {b}, chosen {tuple(self.chosen_ids.shape)}, "
                             f"rejected {tuple(self.rejected_ids.shape)} (chosen/rejected must share [B, L])")

    def completions(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Chosen then rejected stacked as ``2B`` rows: ``(prompt_ids, prompt_mask, ids, mask)``, one forward."""
        return (self.prompt_ids.repeat(2, 1), self.prompt_mask.repeat(2, 1),
                torch.cat([self.chosen_ids, self.rejected_ids]), torch.cat([self.chosen_mask, self.rejected_mask]))


@dataclass(frozen=True)
class RankedLists:
    """One batch of ranked lists: ``prompt_* [N, P]``, ``completion_* [N, K, L]``, ``list_mask [N, K]``,
    ``labels [N, K]``, ``ref_logps [N, K]`` (cached reference sequence log-probs, or None)."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    list_mask: torch.Tensor
    labels: torch.Tensor
    ref_logps: torch.Tensor | None
    index: torch.Tensor
    num_steps: int

    def flat(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """All ``N*K`` items as rows ``(prompt_ids, prompt_mask, ids, mask)`` (padding items included)."""
        n, k, length = self.completion_ids.shape
        return (self.prompt_ids.repeat_interleave(k, 0), self.prompt_mask.repeat_interleave(k, 0),
                self.completion_ids.reshape(n * k, length), self.completion_mask.reshape(n * k, length))


def _trim_left(ids: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    start = int(np.argmax(mask.any(0))) if mask.any() else 0
    ids, mask = np.ascontiguousarray(ids[:, start:]), np.ascontiguousarray(mask[:, start:])
    return torch.from_numpy(ids), torch.from_numpy(mask)


def pair_batch(table: PairTable, index: np.ndarray, ref: np.ndarray | None = None) -> PreferencePairs:
    """Rows ``index`` of a :class:`PairTable` as a trimmed :class:`PreferencePairs` (``ref [N, 2]``)."""
    p_ids, p_mask = _trim_left(table.prompt_ids[index], table.prompt_mask[index])
    cm, rm = table.chosen_mask[index], table.rejected_mask[index]
    width = int(max(cm.sum(1).max(), rm.sum(1).max()))
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a[:, :width]))  # noqa: E731
    ref_c = ref_r = None
    if ref is not None:
        ref_c, ref_r = torch.from_numpy(ref[index, 0].copy()), torch.from_numpy(ref[index, 1].copy())
    return PreferencePairs(p_ids, p_mask, t(table.chosen_ids[index]), t(cm), t(table.rejected_ids[index]), t(rm),
                           ref_c, ref_r, torch.from_numpy(np.asarray(index, dtype=np.int64)), int(len(index)))


def list_batch(table: ListTable, index: np.ndarray, ref: np.ndarray | None = None) -> RankedLists:
    """Rows ``index`` of a :class:`ListTable` as a trimmed :class:`RankedLists` (``ref [N, K]``)."""
    p_ids, p_mask = _trim_left(table.prompt_ids[index], table.prompt_mask[index])
    mask = table.completion_mask[index]
    width = int(mask.sum(-1).max())
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return RankedLists(p_ids, p_mask, t(table.completion_ids[index][..., :width]), t(mask[..., :width]),
                       t(table.list_mask[index]), t(table.labels[index]), None if ref is None else t(ref[index]),
                       torch.from_numpy(np.asarray(index, dtype=np.int64)), int(len(index)))


__all__ = ["ListTable", "PairTable", "PreferencePairs", "PreferenceRecords", "RankedLists", "RankedRecords",
           "list_batch", "lists_from_hf", "load_lists_jsonl", "load_pairs_jsonl", "pair_batch", "pairs_from_hf",
           "save_pairs_jsonl"]


@dataclass(frozen=True)
class OnlineGroups:
    """``P`` groups of ``G`` sampled completions: token tensors ``[P*G, ...]`` (grouped by prompt),
    ``texts`` decoded completions, ``preferences [P, G, G]`` (``[p, i, j] = P(y_i > y_j)``)."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    texts: list[str]
    preferences: torch.Tensor
    num_steps: int

    def rows(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.prompt_ids, self.prompt_mask, self.completion_ids, self.completion_mask
