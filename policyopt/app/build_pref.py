"""Preference-side construction: preference data (JSONL, ``datasets``, synthetic with a known truth),
the starting model (with an optional SFT warm-up), reference log-probs, judges, collectors and
evaluators of DPO-family, online-preference, MPO and reward-model runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policyopt.algos.dpo import DPO, LIST_LOSSES, PreferenceDataConfig, cached_reference
from policyopt.algos.mpo import MPO, MPOConfig, split_by_margin
from policyopt.algos.online_pref import OnlinePreference
from policyopt.algos.reward_model import RewardModelTrainer, build_ensemble
from policyopt.core.config import ConfigError
from policyopt.eval.preference import PairAccuracyEvaluator
from policyopt.lm.builtin import tiny_model
from policyopt.runtime.lm_collectors import (
    MPOCollector,
    OnlinePairCollector,
    PreferenceCollector,
    RewardJudge,
    TruthJudge,
)


def load_data(cfg: PreferenceDataConfig, listwise: bool, tokenizer: Any):
    """``(table, truth | None, synthetic config | None)`` for a data section."""
    from policyopt.core.config import build
    from policyopt.data import preference as D
    from policyopt.lm import synthetic_preference as S

    if cfg.source == "jsonl":
        if not cfg.path:
            raise ConfigError("data.path: required when data.source is 'jsonl'")
        try:
            records = D.load_lists_jsonl(cfg.path) if listwise else D.load_pairs_jsonl(cfg.path)
        except (FileNotFoundError, ValueError) as err:
            raise ConfigError(f"data.path: {err}") from None
        truth, syn = None, None
    else:
        syn = build(S.SyntheticConfig, cfg.synthetic, "data.synthetic")
        records, truth = S.synthetic_lists(syn) if listwise else S.synthetic_pairs(syn)
    table_cls = D.ListTable if listwise else D.PairTable
    try:
        return table_cls.from_records(records, tokenizer, cfg.max_length), truth, syn
    except ValueError as err:
        raise ConfigError(f"data: {err}") from None


def starting_model(model_cfg: Any, synthetic: dict[str, Any] | None = None, sft_updates: int = 0,
                   seed: int = 0, algo: str = "dpo", run_dir: Path | None = None) -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)`` of a ``model:`` section (``builtin``/``tiny``/a directory, weights from
    ``model.init_from`` if set), optionally SFT'd ``sft_updates`` updates on the synthetic behaviour
    policy's completions (so the starting policy writes valid answers): the stage ``sft_warmup`` of the
    run in ``run_dir`` (:func:`policyopt.app.stages.run_stage`; restored, not redone, on resume)."""
    from policyopt.app.build_lm import load_lm_weights
    from policyopt.app.stages import run_stage
    from policyopt.core.config import to_dict
    from policyopt.lm.source import load_model

    if model_cfg.lora_rank:
        raise ConfigError(f"model.lora_rank: {algo} trains all weights (LoRA is available for the online RL "
                          "algorithms: grpo, rloo, remax, lm_reinforce, lm_ppo, loop)")
    if model_cfg.path == "tiny":
        model, tok = tiny_model(seed)
        model = model.to(getattr(torch, model_cfg.dtype))
    else:
        model, tok = load_model(model_cfg.path, model_cfg.dtype)
    if model_cfg.init_from:
        load_lm_weights(model, model_cfg.init_from)
    if sft_updates:
        from policyopt.algos.sft import SFT, SFTConfig
        from policyopt.core.config import build as build_config
        from policyopt.data.text import SFTDataConfig
        from policyopt.lm.synthetic_preference import SyntheticConfig, behaviour_completions, synthetic_prompts
        from policyopt.runtime.lm_collectors import SFTCollector

        syn = build_config(SyntheticConfig, {**(synthetic or {}), "num_prompts": 1024, "seed": 99}, "synthetic")
        prompts = synthetic_prompts(syn)
        texts = behaviour_completions(syn, len(prompts), np.random.default_rng(seed))
        collector = SFTCollector(list(zip(prompts, texts)), tok, SFTDataConfig(batch_size=64, seed=seed))
        sft = SFT(model, SFTConfig(learning_rate=5e-3, warmup_updates=10))
        run_stage("sft_warmup", sft, collector, sft_updates, collector.config.batch_size, run_dir,
                  {"model": to_dict(model_cfg), "seed": seed, "synthetic": to_dict(syn), "sft": to_dict(sft.config),
                   "data": to_dict(collector.config)})
        model.eval()
    return model, tok


def build_dpo(run_config: Any, run_dir: Path) -> tuple[Any, Any, Any]:
    """Registry builder for ``algo: dpo | ipo | slic | rrhf | lipo``."""
    from policyopt.core.seeding import derive_seed

    cfg = run_config.algo_config
    model, tokenizer = starting_model(run_config.model, cfg.data.synthetic, cfg.sft_warmup_updates,
                                      algo=run_config.algo, run_dir=run_dir)
    listwise = cfg.loss in LIST_LOSSES
    table, truth, syn = load_data(cfg.data, listwise, tokenizer)
    mean = cfg.length_normalize and cfg.loss != "rrhf"
    ref = cached_reference(model, table, Path(run_dir) / "reference_logps.safetensors",
                           cfg.data.reference_batch_size, mean)
    evaluator = None
    if truth is not None:
        from policyopt.eval.preference import WinRateEvaluator, win_rate_config

        evaluator = WinRateEvaluator.from_synthetic(model, tokenizer, truth, syn, win_rate_config(cfg.eval),
                                                    derive_seed(run_config.seed, "eval"))
    algo = DPO(cfg, model)
    collector = PreferenceCollector(table, ref, cfg.data.batch_size, cfg.data.shuffle_seed)
    return algo, collector, evaluator


def build_online_pref(run_config: Any, run_dir: Path) -> tuple[Any, Any, Any]:
    """Registry builder for ``algo: online_dpo | spo | inpo | egpo`` on synthetic preferences."""
    from policyopt.core.config import build as build_config
    from policyopt.core.seeding import derive_seed
    from policyopt.eval.preference import WinRateEvaluator, win_rate_config
    from policyopt.lm.synthetic_preference import SyntheticConfig, make_truth, synthetic_prompts

    cfg = run_config.algo_config
    model, tok = starting_model(run_config.model, cfg.synthetic, cfg.sft_warmup_updates, algo=run_config.algo,
                                run_dir=run_dir)
    from policyopt.lm.policy import frozen_copy

    reference = frozen_copy(model)
    syn = build_config(SyntheticConfig, cfg.synthetic, f"{run_config.algo}.synthetic")
    truth = make_truth(syn)
    judge = TruthJudge(truth) if cfg.judge == "truth" else RewardJudge(truth.as_reward_fn(), 0.1)
    evaluator = WinRateEvaluator.from_synthetic(model, tok, truth, syn, win_rate_config(cfg.eval),
                                                derive_seed(run_config.seed, "eval"))
    collector = OnlinePairCollector(model, tok, synthetic_prompts(syn), judge, cfg.prompts_per_step,
                                    cfg.completions_per_prompt, cfg.max_new_tokens or truth.max_len, cfg.temperature,
                                    derive_seed(run_config.seed, "sampler"))
    return OnlinePreference(cfg, model, reference), collector, evaluator


def _trained_reward_fn(cfg: MPOConfig, backbone: str, table: Any, tokenizer: Any, seed: int,
                       run_dir: Path | None = None) -> Any:
    """MPO's reward model: ``rm_updates`` updates on all pairs, the stage ``reward_model`` of the run."""
    from policyopt.algos.reward_model import RewardModelConfig, RewardModelTrainer, as_reward_fn, build_ensemble
    from policyopt.app.stages import run_stage
    from policyopt.core.config import to_dict
    from policyopt.runtime.lm_collectors import PreferenceCollector

    members, _ = build_ensemble(backbone, 1, "causal", seed=seed)
    trainer = RewardModelTrainer(RewardModelConfig(learning_rate=cfg.rm_learning_rate, seed=seed), members, len(table))
    collector = PreferenceCollector(table, None, cfg.batch_size, seed=seed)
    run_stage("reward_model", trainer, collector, cfg.rm_updates, cfg.batch_size, run_dir,
              {"backbone": backbone, "seed": seed, "synthetic": cfg.synthetic, "reward_model": to_dict(trainer.config)})
    return as_reward_fn(trainer, tokenizer)


def build_mpo(run_config: Any, run_dir: Path) -> tuple[Any, Any, Any]:
    """Registry builder for ``algo: mpo`` on synthetic preferences."""
    from policyopt.algos.dpo import DPO, DPOConfig, cached_reference
    from policyopt.algos.grpo import GRPO, GRPOConfig
    from policyopt.core.config import build as build_config
    from policyopt.core.seeding import derive_seed
    from policyopt.data.preference import PairTable
    from policyopt.eval.preference import WinRateEvaluator, win_rate_config
    from policyopt.lm.policy import LMPolicy
    from policyopt.lm.synthetic_preference import SyntheticConfig, synthetic_pairs
    from policyopt.lm.tasks import TaskExample
    from policyopt.runtime.lm_collectors import PreferenceCollector
    from policyopt.runtime.text_collector import TextCollector

    cfg, seed = run_config.algo_config, run_config.seed
    model, tok = starting_model(run_config.model, cfg.synthetic, cfg.sft_warmup_updates, algo="mpo", run_dir=run_dir)
    syn = build_config(SyntheticConfig, cfg.synthetic, "mpo.synthetic")
    records, truth = synthetic_pairs(syn)
    table = PairTable.from_records(records, tok)
    reward_fn = (truth.as_reward_fn() if cfg.reward == "truth"
                 else _trained_reward_fn(cfg, run_config.model.path, table, tok, seed, run_dir))
    margins = np.asarray(reward_fn(records.prompts, records.chosen)) - np.asarray(
        reward_fn(records.prompts, records.rejected))
    easy, hard = split_by_margin(margins, cfg.easy_fraction)
    easy_table = PairTable.from_records(records.subset(easy), tok)
    ref = cached_reference(model, easy_table, Path(run_dir) / "reference_logps.safetensors")
    evaluator = WinRateEvaluator.from_synthetic(model, tok, truth, syn, win_rate_config(cfg.eval),
                                                derive_seed(seed, "eval"))
    rl_cfg = build_config(GRPOConfig, cfg.rl, "mpo.rl")
    policy = LMPolicy(model, tok)
    per_update = rl_cfg.collect.prompts_per_step * rl_cfg.collect.completions_per_prompt
    rl_updates = max(1, (run_config.trainer.total_steps - cfg.dpo_updates * cfg.batch_size) // per_update)
    rl = GRPO(rl_cfg, policy, rl_updates, derive_seed(seed, "minibatches"))
    dpo = DPO(DPOConfig(beta=cfg.beta, learning_rate=cfg.dpo_learning_rate), model)
    hard_prompts = [TaskExample(records.prompts[i], "", {}) for i in hard]
    online = TextCollector(policy, hard_prompts, reward_fn, rl_cfg.collect, derive_seed(seed, "sampler"))
    offline = PreferenceCollector(easy_table, ref, cfg.batch_size, seed)
    algo = MPO(dpo, rl, policy)
    algo.split_info = {"easy_pairs": float(len(easy)), "hard_pairs": float(len(hard)),
                       "easy_flipped_frac": float(records.flipped[easy].mean()),
                       "hard_flipped_frac": float(records.flipped[hard].mean()),
                       "margin_threshold": float(np.min(margins[easy]))}
    return algo, MPOCollector(offline, online, cfg.dpo_updates), evaluator


def build_reward_model(run_config: Any, run_dir: Any) -> tuple[Any, Any, Any]:
    """Registry builder for ``algo: reward_model`` (pairs; synthetic data is evaluated on held-out pairs)."""
    from policyopt.algos.dpo import PreferenceDataConfig
    from policyopt.core.config import ConfigError
    from policyopt.core.config import build as build_config
    from policyopt.data.preference import PairTable
    from policyopt.lm.synthetic_preference import synthetic_pairs
    from policyopt.runtime.lm_collectors import PreferenceCollector

    cfg = run_config.algo_config
    if cfg.objective != "bradley_terry":
        raise ConfigError(f"{run_config.algo}.objective: the CLI trains Bradley-Terry models on pairs; "
                          "use RewardModelTrainer directly for binary feedback or cost labels")
    data = build_config(PreferenceDataConfig, cfg.data, "data")
    members, tok = build_ensemble(cfg.backbone, cfg.ensemble_size, cfg.backbone_kind, cfg.pooling, cfg.seed)
    table, truth, syn = load_data(data, False, tok)
    trainer = RewardModelTrainer(cfg, members, len(table))
    evaluator = None
    if syn is not None:
        held, _ = synthetic_pairs(dataclasses.replace(syn, num_prompts=cfg.eval_pairs, split="eval", flip_rate=0.0,
                                                      seed=syn.seed + 1))
        evaluator = PairAccuracyEvaluator(trainer, PairTable.from_records(held, tok, data.max_length))
    return trainer, PreferenceCollector(table, None, data.batch_size, data.shuffle_seed), evaluator
