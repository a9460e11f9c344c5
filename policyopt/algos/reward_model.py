"""Reward models on any Hugging Face backbone: Bradley-Terry, ensembles with preference strength,
binary feedback and cost models; a trained model becomes a ``RewardFn`` for online RL.

- :class:`RewardModel`: a scalar head on the body of a causal LM (pooling the last real token) or of
  an encoder (mean pooling over real tokens, the sentence-transformers convention, or ``[CLS]``).
- :class:`RewardModelTrainer` (an ``Algorithm``) trains an *ensemble* of ``K`` reward models at once
  (``K = 1``: a single model). Objectives (pure losses from :mod:`policyopt.losses.preference`):

  * ``bradley_terry`` on :class:`~policyopt.data.preference.PreferencePairs`:
    :math:`-\\log\\sigma(r_c - r_r - m)` with optional margin and label smoothing
    (Ouyang et al., 2022; Touvron et al., 2023), and per-pair ``flip`` / smoothing / adaptive margin
    from the ensemble's preference strength (:meth:`RewardModelTrainer.apply_strength`; "Secrets of
    RLHF Part II", Wang et al., 2024); optional InfoNCE auxiliary loss on two dropout views of each
    pair's feature difference (same paper, SimCSE-style);
  * ``binary`` on :class:`LabelledResponses`: BCE on like / no-like signals ("RL from User
    Feedback", Han et al., 2025);
  * ``cost`` on :class:`LabelledResponses`: the cost model of Safe RLHF (Dai et al., 2024) scores
    unsafe responses positive, safe ones negative (:math:`-\\log\\sigma(s \\cdot c)`, s = +1 unsafe).

  Ensemble members differ by head initialisation and by Poisson(1) bootstrap weights per pair
  (``bootstrap=True``), so each pair is *out of bag* for about a third of them:
  :meth:`RewardModelTrainer.strength` can vote with out-of-bag members only.
- :func:`as_reward_fn`: a trained model as a ``RewardFn`` (prompts, completions -> floats; the
  ensemble mean, optionally minus ``k`` standard deviations as an uncertainty penalty).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import pydantic
import torch

from policyopt.core.config import configclass
from policyopt.losses import preference as L
from policyopt.nets.optim import optimizer_step


@configclass
class RewardModelConfig:
    objective: Literal["bradley_terry", "binary", "cost"] = "bradley_terry"
    """Training signal (see the module docstring)."""
    ensemble_size: Annotated[int, pydantic.Field(ge=1)] = 1
    """K reward models trained together (K >= 2 for preference strength)."""
    bootstrap: bool = True
    """Ensemble members weight each pair by their own Poisson(1) draw (only when K >= 2)."""
    pooling: Literal["auto", "last", "mean", "cls"] = "auto"
    """Sequence feature: ``last`` real token (causal LMs), ``mean`` or ``cls`` (encoders); auto picks."""
    margin: Annotated[float, pydantic.Field(ge=0)] = 0.0
    """Constant Bradley-Terry margin (added to the adaptive one, if any)."""
    label_smoothing: Annotated[float, pydantic.Field(ge=0, lt=0.5)] = 0.0
    """Constant label smoothing of the Bradley-Terry loss (pairs without a per-pair value)."""
    contrastive_weight: Annotated[float, pydantic.Field(ge=0)] = 0.0
    """Weight of the InfoNCE auxiliary loss (needs a backbone with dropout for two distinct views)."""
    contrastive_temperature: Annotated[float, pydantic.Field(gt=0)] = 0.1
    """InfoNCE temperature."""
    pos_weight: Annotated[float, pydantic.Field(gt=0)] = 1.0
    """Binary objective: weight of the positive (like) class."""
    learning_rate: Annotated[float, pydantic.Field(gt=0)] = 1e-3
    """AdamW learning rate (backbone and head)."""
    weight_decay: Annotated[float, pydantic.Field(ge=0)] = 0.0
    """AdamW weight decay."""
    max_grad_norm: Annotated[float, pydantic.Field(gt=0)] | None = 1.0
    """Gradient-norm clip over all members (None: no clipping)."""
    seed: Annotated[int, pydantic.Field(ge=0)] = 0
    """Seed of head initialisation and bootstrap weights."""


@dataclass(frozen=True)
class LabelledResponses:
    """Single responses with a binary label (like = 1, or unsafe = 1 for a cost model).

    ``prompt_* [B, P]`` left-padded, ``completion_* [B, L]`` right-padded, ``labels [B]`` float."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor
    num_steps: int


def load_backbone(path: str, kind: Literal["causal", "encoder"] = "causal") -> tuple[torch.nn.Module, Any]:
    """``(body, tokenizer)``: the transformer body of a local causal LM (``builtin``/``tiny`` allowed) or encoder."""
    from transformers import AutoModel, AutoTokenizer

    if kind == "causal":
        from policyopt.lm.builtin import tiny_model
        from policyopt.lm.logprobs import body_and_head
        from policyopt.lm.source import load_model

        model, tok = tiny_model() if path == "tiny" else load_model(path)
        return body_and_head(model)[0], tok
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return AutoModel.from_pretrained(path, local_files_only=True), tok


class RewardModel(torch.nn.Module):
    """Backbone body + linear head -> one score per sequence. ``causal``: pools the last real token."""

    def __init__(self, body: torch.nn.Module, pooling: str = "auto", seed: int = 0):
        super().__init__()
        self.body = body
        cfg = body.config
        self.causal = bool(getattr(cfg, "is_decoder", False)) or "CausalLM" in str(getattr(cfg, "architectures", ""))
        self.causal = self.causal or type(body).__name__.endswith(("LlamaModel", "Qwen2Model", "GPT2Model"))
        self.pooling = pooling if pooling != "auto" else ("last" if self.causal else "mean")
        self._takes_positions = "position_ids" in inspect.signature(body.forward).parameters
        hidden = int(cfg.hidden_size)
        self.head = torch.nn.Linear(hidden, 1)
        gen = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(1, hidden, generator=gen) / hidden ** 0.5)
            self.head.bias.zero_()

    def features(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, H]`` pooled features of (left- or right-) padded ``ids [B, T]`` with ``mask [B, T]``."""
        from policyopt.lm.logprobs import position_ids

        mask = mask.bool()
        # real-token positions for every model that takes them (left-padded prompts must not shift them)
        kwargs = {"position_ids": position_ids(mask)} if self._takes_positions else {}
        hidden = self.body(input_ids=ids, attention_mask=mask.long(), **kwargs).last_hidden_state
        if self.pooling == "last":
            last = mask.shape[1] - 1 - mask.flip(1).float().argmax(1)
            return hidden[torch.arange(ids.shape[0]), last]
        if self.pooling == "cls":
            first = mask.float().argmax(1)
            return hidden[torch.arange(ids.shape[0]), first]
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(ids, mask)
        return self.head(feats).squeeze(-1), feats


def _sequences(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, ids: torch.Tensor,
               mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([prompt_ids, ids], 1), torch.cat([prompt_mask.bool(), mask.bool()], 1)


class RewardModelTrainer:
    """Trains ``K`` :class:`RewardModel` s (an ensemble) as one ``Algorithm``; see the module docstring.

    ``members``: the K models (distinct bodies; build them with :func:`build_ensemble`). ``num_pairs``
    sizes the per-pair tables (bootstrap weights, strength treatment) indexed by ``batch.index``.
    """

    weight_keys = ("members",)
    """Paths in ``state_dict()`` of the learned weights (what ``--init-from`` copies from another run)."""

    def __init__(self, config: RewardModelConfig, members: Sequence[RewardModel], num_pairs: int):
        if len(members) != config.ensemble_size:
            raise ValueError(f"RewardModelTrainer: {len(members)} members for ensemble_size={config.ensemble_size}")
        self.config, self.members = config, torch.nn.ModuleList(members)
        self.params = [p for p in self.members.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=config.weight_decay)
        k = len(members)
        gen = np.random.default_rng([config.seed, 5])
        boot = config.bootstrap and k > 1
        self.weights = torch.from_numpy(gen.poisson(1.0, size=(k, num_pairs)).astype(np.float32)) if boot \
            else torch.ones(k, num_pairs)
        self.flip = torch.zeros(num_pairs, dtype=torch.bool)
        self.smoothing = torch.full((num_pairs,), float(config.label_smoothing))
        self.margin = torch.full((num_pairs,), float(config.margin))
        self.num_updates = 0

    def scores(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``([K, B] scores, [K, B, H] features)`` of every member."""
        out = [m(ids, mask) for m in self.members]
        return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])

    def pair_scores(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(r_chosen [K, B], r_rejected [K, B], feature differences [K, B, H])``."""
        p_ids, p_mask, ids, mask = batch.completions()
        s, f = self.scores(*_sequences(p_ids, p_mask, ids, mask))
        b = batch.chosen_ids.shape[0]
        return s[:, :b], s[:, b:], f[:, :b] - f[:, b:]

    def losses(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        if isinstance(batch, LabelledResponses):
            return self._labelled_losses(batch)
        if c.objective != "bradley_terry":
            raise TypeError(f"objective {c.objective!r} trains on LabelledResponses, got {type(batch).__name__}")
        rc, rr, diff = self.pair_scores(batch)
        i = batch.index
        per = L.bradley_terry_loss(rc, rr, self.margin[i], self.smoothing[i], self.flip[i])    # [K, B]
        w = self.weights[:, i]
        loss = (per * w).sum() / w.sum().clamp_min(1.0)
        if c.contrastive_weight > 0:
            _, _, diff2 = self.pair_scores(batch)
            aux = torch.stack([L.info_nce_loss(d1, d2, c.contrastive_temperature) for d1, d2 in zip(diff, diff2)])
            loss = loss + c.contrastive_weight * aux.mean()
        d = (rc - rr).detach()
        return loss, {"rewards/accuracy": float((d > 0).float().mean()), "rewards/margin": float(d.mean())}

    def _labelled_losses(self, batch: LabelledResponses) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        s, _ = self.scores(*_sequences(batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                       batch.completion_mask))
        y = batch.labels.to(s.dtype).expand_as(s)
        if c.objective == "binary":
            per = L.binary_feedback_loss(s, y, c.pos_weight)
        elif c.objective == "cost":
            per = -torch.nn.functional.logsigmoid((2.0 * y - 1.0) * s)       # Safe RLHF cost-model sign term
        else:
            raise TypeError("bradley_terry trains on PreferencePairs, got LabelledResponses")
        acc = ((s.detach() > 0).to(y.dtype) == y).float().mean()
        return per.mean(), {"rewards/label_accuracy": float(acc)}

    def update(self, batch: Any) -> dict[str, float]:
        self.members.train()
        loss, stats = self.losses(batch)
        norm = optimizer_step(self.optimizer, self.params, loss, self.config.max_grad_norm)
        self.num_updates += 1
        return {f"loss/{self.config.objective}": float(loss.detach()), "stats/grad_norm": float(norm), **stats}

    # ----------------------------------------------------------------------- preference strength
    @torch.no_grad()
    def table_rewards(self, table: Any, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """``(r_chosen [K, N], r_rejected [K, N])`` of every member on a whole ``PairTable``."""
        from policyopt.data.preference import pair_batch

        self.members.eval()
        chosen, rejected = [], []
        for start in range(0, len(table), batch_size):
            rc, rr, _ = self.pair_scores(pair_batch(table, np.arange(start, min(start + batch_size, len(table)))))
            chosen.append(rc)
            rejected.append(rr)
        return torch.cat(chosen, 1).numpy(), torch.cat(rejected, 1).numpy()

    def strength(self, table: Any, out_of_bag: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Per-pair preference strength ``(mean [N], std [N])`` of the ensemble ("Secrets of RLHF II").
        With ``out_of_bag`` each pair is judged only by members whose bootstrap weight for it was 0
        (all members where none was)."""
        rc, rr = self.table_rewards(table)
        d = rc - rr
        if not out_of_bag or not (self.config.bootstrap and d.shape[0] > 1):
            return d.mean(0), d.std(0, ddof=1) if d.shape[0] > 1 else np.zeros(d.shape[1])
        oob = (self.weights.numpy() == 0)
        oob[:, ~oob.any(0)] = True
        n = oob.sum(0)
        mean = (d * oob).sum(0) / n
        var = (((d - mean) ** 2) * oob).sum(0) / np.maximum(n - 1, 1)
        return mean.astype(np.float32), np.sqrt(var).astype(np.float32)

    def apply_strength(self, strength: np.ndarray, flip_below: float | None = 0.0, soften_below: float | None = None,
                       smoothing: float = 0.1, margin_scale: float = 0.0) -> dict[str, float]:
        """Set per-pair flip / smoothing / adaptive margin from a preference strength (``[N]``)."""
        t = L.strength_treatment(torch.as_tensor(strength, dtype=torch.float32), flip_below, soften_below,
                                 smoothing, margin_scale)
        self.flip = t.flip.clone()
        self.smoothing = torch.where(t.label_smoothing > 0, t.label_smoothing, self.smoothing)
        self.margin = t.margin + self.config.margin
        return {"treatment/flipped": float(t.flip.float().mean()), "treatment/softened":
                float((t.label_smoothing > 0).float().mean()), "treatment/margin_mean": float(t.margin.mean())}

    # ------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"members": {k: v.detach().clone() for k, v in self.members.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "weights": self.weights.clone(), "flip": self.flip.clone(),
                "smoothing": self.smoothing.clone(), "margin": self.margin.clone(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.members.load_state_dict(state["members"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.weights, self.flip = state["weights"].clone(), state["flip"].clone().bool()
        self.smoothing, self.margin = state["smoothing"].clone(), state["margin"].clone()
        self.num_updates = int(state["num_updates"])


def build_ensemble(backbone: str, k: int, kind: Literal["causal", "encoder"] = "causal", pooling: str = "auto",
                   seed: int = 0) -> tuple[list[RewardModel], Any]:
    """``K`` reward models, each with its own copy of the backbone and a differently seeded head."""
    members, tok = [], None
    for i in range(k):
        body, tok = load_backbone(backbone, kind)
        members.append(RewardModel(body, pooling, seed=seed * 1000 + i))
    return members, tok


def as_reward_fn(trainer_or_model: Any, tokenizer: Any, uncertainty_penalty: float = 0.0, batch_size: int = 64):
    """A ``RewardFn``: ``fn(prompts, completions, metadata=None) -> list[float]``, scored like the training
    pairs (BOS + prompt, completion + EOS). An ensemble gives its mean minus ``uncertainty_penalty``
    times its standard deviation (a conservative reward against over-optimisation)."""
    from policyopt.lm.logprobs import left_pad

    members = list(getattr(trainer_or_model, "members", [trainer_or_model]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = [int(tokenizer.eos_token_id)] if tokenizer.eos_token_id is not None else []

    def reward_model_fn(prompts: Sequence[str], completions: Sequence[str], metadata: Any = None) -> list[float]:
        out = []
        p_all = tokenizer(list(prompts))["input_ids"]
        c_all = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            for s in range(0, len(p_all), batch_size):
                seqs = [list(p) + list(c) + eos for p, c in zip(p_all[s:s + batch_size], c_all[s:s + batch_size])]
                ids, mask = left_pad(seqs, int(pad))
                scores = torch.stack([m.eval()(ids, mask)[0] for m in members])
                std = scores.std(0) if len(members) > 1 else torch.zeros_like(scores[0])
                out.extend((scores.mean(0) - uncertainty_penalty * std).tolist())
        return out

    return reward_model_fn


# --------------------------------------------------------------------------------------- builder


@configclass
class RewardModelRunConfig(RewardModelConfig):
    """A reward-model run: :class:`RewardModelConfig` plus backbone, data and held-out evaluation."""

    backbone: str = "builtin"
    """``builtin``, a local causal-LM directory, or a local encoder directory (``backbone_kind: encoder``)."""
    backbone_kind: Literal["causal", "encoder"] = "causal"
    """Causal LM body (last-token pooling) or encoder (mean pooling)."""
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Fields of :class:`policyopt.algos.dpo.PreferenceDataConfig` (pairs)."""
    eval_pairs: Annotated[int, pydantic.Field(ge=1)] = 256
    """Held-out synthetic pairs (eval-split prompts, clean labels) for ``eval/pair_accuracy``."""


__all__ = ["LabelledResponses", "RewardModel", "RewardModelConfig", "RewardModelRunConfig", "RewardModelTrainer",
           "as_reward_fn", "build_ensemble", "load_backbone"]
