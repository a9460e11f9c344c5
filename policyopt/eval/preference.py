"""Evaluation of preference learning against a known truth: win rates, pair accuracy, calibration.

- :class:`WinRateEvaluator` (a trainer ``Evaluator``): samples completions of held-out prompts from
  the current policy and compares them with completions the *starting* policy sampled for the same
  prompts under the same random numbers, judged by the ground truth:
  ``eval/win_rate = mean P(y_policy > y_start)`` (0.5 = no change; exactly 0.5 before training,
  because both sides then draw identical samples). On cyclic (intransitive) truths also
  ``eval/worst_case_win_rate`` (:func:`worst_case_win_rate`), the criterion Nash methods optimise.
- :func:`pair_accuracy` and :func:`calibration` score a reward model on labelled pairs: accuracy of
  ``r(chosen) > r(rejected)``, and the expected calibration error (ECE, Guo et al., 2017) of the
  Bradley-Terry probability ``sigma(r_c - r_r)`` against the outcome (a label or the true probability).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
import pydantic
import torch

from policyopt.core.config import build, configclass


@configclass
class WinRateConfig:
    """Held-out win-rate evaluation on synthetic preferences."""

    prompts: Annotated[int, pydantic.Field(ge=1)] = 64
    """Held-out prompts (eval split of the task family; never trained on)."""
    samples_per_prompt: Annotated[int, pydantic.Field(ge=1)] = 4
    """Completions per prompt on each side."""
    temperature: Annotated[float, pydantic.Field(gt=0)] = 1.0
    """Sampling temperature for both sides."""
    max_new_tokens: Annotated[int, pydantic.Field(ge=0)] = 0
    """Generation budget (0: the truth's longest completion; longer samples are cut there)."""


def win_rate_config(data: dict[str, Any] | WinRateConfig | None) -> WinRateConfig:
    return data if isinstance(data, WinRateConfig) else build(WinRateConfig, data or {}, "eval")


def sample_texts(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], samples_per_prompt: int,
                 max_new_tokens: int, temperature: float, seed: int) -> list[str]:
    """Completions (special tokens stripped) for ``prompts`` x ``samples_per_prompt``, grouped by prompt."""
    from policyopt.lm.sampling import SamplingConfig, sample

    cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                         samples_per_prompt=samples_per_prompt)
    ids = [list(x) for x in tokenizer(list(prompts))["input_ids"]]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = sample(model, ids, cfg, generator=torch.Generator().manual_seed(int(seed)), pad_token_id=int(pad),
                 eos_token_ids=[int(tokenizer.eos_token_id)])
    return tokenizer.batch_decode(out.completion_lists(), skip_special_tokens=True)


class WinRateEvaluator:
    """Win rate of the current policy against the starting policy under a ground truth.

    The starting policy's completions are sampled once, at construction (so no reference model is
    kept); every evaluation re-samples the current policy with the same seed.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], truth: Any,
                 config: WinRateConfig, seed: int = 0):
        self.model, self.tokenizer, self.truth, self.config, self.seed = model, tokenizer, truth, config, seed
        self.prompts = list(prompts)
        self.max_new_tokens = config.max_new_tokens or truth.max_len
        # `policyopt eval` sets these; evaluation here is always sampled against the fixed start samples
        self.episodes, self.deterministic = len(self.prompts), False
        self.reference = self._sample()

    @classmethod
    def from_synthetic(cls, model: torch.nn.Module, tokenizer: Any, truth: Any, synthetic: Any,
                       config: WinRateConfig, seed: int = 0) -> WinRateEvaluator:
        """Held-out prompts of the synthetic data's task family (the eval split)."""
        from policyopt.lm.synthetic_preference import synthetic_prompts

        return cls(model, tokenizer, synthetic_prompts(synthetic, config.prompts, "eval"), truth, config, seed)

    def _sample(self) -> list[str]:
        c = self.config
        return sample_texts(self.model, self.tokenizer, self.prompts, c.samples_per_prompt, self.max_new_tokens,
                            c.temperature, self.seed)

    def evaluate(self) -> dict[str, float]:
        texts = self._sample()
        prompts = [p for p in self.prompts for _ in range(self.config.samples_per_prompt)]
        wins = self.truth.preference(texts, self.reference, prompts)
        out = {"eval/win_rate": float(wins.mean()), "eval/valid_frac": float(self.truth.valid(texts, prompts).mean())}
        if self.truth.kind in ("utility", "task"):
            out["eval/true_reward"] = float(self.truth.reward(texts, prompts).mean())
            out["eval/start_true_reward"] = float(self.truth.reward(self.reference, prompts).mean())
        if self.truth.kind == "task":
            out["eval/accuracy"] = float((self.truth.reward(texts, prompts) == 1.0).mean())
            out["eval/start_accuracy"] = float((self.truth.reward(self.reference, prompts) == 1.0).mean())
        if self.truth.kind == "cyclic":
            out["eval/worst_case_win_rate"] = worst_case_win_rate(self.truth, texts)
        return out


def worst_case_win_rate(truth: Any, texts: Sequence[str]) -> float:
    """Cyclic truth: the policy's lowest win rate against the three *pure* opponents (every character of
    one class, same length as each sample). A Nash policy scores 0.5; a policy that exploits a skewed
    opponent is itself exploitable and scores less. (1 - this) bounds its exploitability from below."""
    rates = []
    for k in range(3):
        letter = truth.alphabet[k]
        opponents = [letter * max(len(t), truth.min_len) for t in texts]
        rates.append(float(truth.preference(list(texts), opponents).mean()))
    return min(rates)


def pair_accuracy(reward_chosen: Any, reward_rejected: Any, flipped: Any = None) -> float:
    """Fraction of pairs with ``r(chosen) > r(rejected)`` (ties count half). With ``flipped [N]``
    (known label noise) the accuracy is measured against the *true* labels."""
    d = np.asarray(reward_chosen, dtype=np.float64) - np.asarray(reward_rejected, dtype=np.float64)
    if flipped is not None:
        d = np.where(np.asarray(flipped, dtype=bool), -d, d)
    return float(np.mean((d > 0) + 0.5 * (d == 0)))


def calibration(reward_chosen: Any, reward_rejected: Any, outcome: Any, bins: int = 10) -> dict[str, float]:
    """Expected calibration error of ``p = sigma(r_c - r_r)`` against ``outcome [N]`` in [0, 1] (1 =
    chosen really better, or the true probability) over ``bins`` equal-width bins, plus the Brier score."""
    p = 1.0 / (1.0 + np.exp(-(np.asarray(reward_chosen, np.float64) - np.asarray(reward_rejected, np.float64))))
    y = np.asarray(outcome, dtype=np.float64)
    if p.shape != y.shape:
        raise ValueError(f"calibration: {p.shape} predictions vs {y.shape} outcomes")
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, p, bins) - np.bincount(which, y, bins))
    return {"ece": float(gap.sum() / max(len(p), 1)), "brier": float(np.mean((p - y) ** 2)),
            "mean_confidence": float(np.mean(np.maximum(p, 1 - p))), "bins_used": float((count > 0).sum())}


__all__ = ["WinRateConfig", "WinRateEvaluator", "calibration", "pair_accuracy", "sample_texts", "win_rate_config",
           "worst_case_win_rate"]


class PairAccuracyEvaluator:
    """``eval/pair_accuracy`` (per member and of the ensemble mean) and ECE on a held-out pair table."""

    def __init__(self, trainer: Any, table: Any):
        self.trainer, self.table = trainer, table
        self.episodes, self.deterministic = len(table), True      # read/set by `policyopt eval`; unused

    def evaluate(self) -> dict[str, float]:

        rc, rr = self.trainer.table_rewards(self.table)
        out = {"eval/pair_accuracy": pair_accuracy(rc.mean(0), rr.mean(0)),
               "eval/ece": calibration(rc.mean(0), rr.mean(0), np.ones(rc.shape[1]))["ece"]}
        if rc.shape[0] > 1:
            out["eval/member_accuracy_mean"] = float(np.mean([pair_accuracy(a, b) for a, b in zip(rc, rr)]))
        return out
