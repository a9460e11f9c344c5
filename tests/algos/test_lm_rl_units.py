"""TextCollector and the GRPO core on small, hand-checkable batches.

- unscorable rewards (None from the reward function) are masked out of the group statistics and of
  the loss, never scored 0;
- the collector's state resumes the exact next generation block;
- dynamic sampling keeps only informative groups and refills the batch;
- each reward-shaping / masking option changes exactly what it should (hand-computed values).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from policyopt.algos.grpo import GRPO, GRPOConfig
from policyopt.core.config import build
from policyopt.data.text import CollectConfig, TextRollout
from policyopt.lm.policy import LMPolicy
from policyopt.lm.reward import RewardGuard
from policyopt.lm.source import load_model, prompt_pools
from policyopt.losses import shaping
from policyopt.runtime.text_collector import TextCollector
from tests.algos.lm_helpers import TASK_PARAMS, TASKS, cached_tiny_model


@pytest.fixture(scope="module")
def policy():
    torch.set_num_threads(1)
    model, tok = load_model(str(cached_tiny_model()))
    return LMPolicy(model, tok)


@pytest.fixture(scope="module")
def examples():
    from policyopt.lm.source import PromptDataConfig

    return prompt_pools(PromptDataConfig(tasks=TASKS, task_params=TASK_PARAMS, eval_prompts=10))[0]


def _code(text: str) -> int:
    return sum(map(ord, text))


def length_reward_or_none(prompts, completions, metadata):
    """A pseudo-random reward of the completion text (differs whenever two texts differ); None
    (unscorable) for a pseudo-random third of the texts."""
    return [None if _code(c) % 3 == 0 else (_code(c) % 11) / 10.0 for c in completions]


def _core(policy, **fields) -> GRPO:
    return GRPO(build(GRPOConfig, {"track_kl": False, **fields}), policy)


def test_unscorable_rewards_are_masked_not_zeroed(policy, examples):
    collector = TextCollector(policy, examples, RewardGuard(length_reward_or_none),
                              CollectConfig(prompts_per_step=8, completions_per_prompt=6, max_new_tokens=12), seed=3)
    batch = collector.collect()
    texts = policy.tokenizer.batch_decode([row[m].tolist() for row, m in zip(batch.completion_ids,
                                                                                 batch.loss_mask)],
                                          skip_special_tokens=True)
    expect = torch.tensor([_code(t) % 3 != 0 for t in texts])
    assert torch.equal(batch.scorable, expect) and 0 < int((~expect).sum()) < len(texts)
    assert torch.isnan(batch.rewards[~expect]).all()
    assert batch.metrics["reward/unscorable_frac"] == pytest.approx(float((~expect).float().mean()))

    core = _core(policy)
    prep = core.prepare(batch)
    assert (prep.adv[~expect] == 0).all()
    assert not prep.mask[~expect].any() and prep.mask[expect].any()
    # by hand: per group, mean and (n-1)-std over the scorable completions only
    mixed = 0
    for g in range(batch.num_groups):
        rows = (batch.group_index == g).nonzero().squeeze(1)
        ok = rows[batch.scorable[rows]]
        r = batch.rewards[ok].double().numpy()
        if len(r) < 2 or np.ptp(r) <= 1e-6:
            assert (prep.adv[rows] == 0).all()
            continue
        want = (r - r.mean()) / max(r.std(ddof=1), 1e-3)
        assert np.allclose(prep.adv[ok].numpy(), want, atol=1e-5)
        if len(ok) < len(rows):
            mixed += 1
            zero_filled = batch.rewards[rows].nan_to_num(0.0).double().numpy()
            wrong = (zero_filled - zero_filled.mean()) / zero_filled.std(ddof=1)
            assert not np.allclose(wrong[batch.scorable[rows].numpy()], want, atol=1e-3)
    assert mixed >= 1


def test_collector_state_resumes_the_next_block(policy, examples):
    cfg = CollectConfig(prompts_per_step=5, completions_per_prompt=3, max_new_tokens=10)
    a = TextCollector(policy, examples, RewardGuard(length_reward_or_none), cfg, seed=7)
    first = a.collect()
    assert first.num_steps == 15 and first.completion_ids.shape[0] == 15
    assert torch.equal(first.group_index, torch.arange(5).repeat_interleave(3))
    state = a.state_dict()
    b = TextCollector(policy, examples, RewardGuard(length_reward_or_none), cfg, seed=7)
    b.load_state_dict(state)
    nxt_a, nxt_b = a.collect(), b.collect()
    assert torch.equal(nxt_a.completion_ids, nxt_b.completion_ids)
    assert torch.equal(nxt_a.prompt_ids, nxt_b.prompt_ids)
    assert not torch.equal(nxt_a.prompt_ids, first.prompt_ids)
    with pytest.raises(ValueError, match="seed"):
        TextCollector(policy, examples, length_reward_or_none, cfg, seed=8).load_state_dict(state)


def test_dynamic_sampling_keeps_informative_groups_and_refills(policy, examples):
    def half_tied(prompts, completions, metadata):  # prompts with an even first digit always score 1
        return [1.0 if int(p[5]) % 2 == 0 else (_code(c) % 11) / 10.0
                for p, c in zip(prompts, completions)]

    cfg = CollectConfig(prompts_per_step=6, completions_per_prompt=4, max_new_tokens=10, dynamic_sampling=True,
                        max_refill_rounds=6)
    batch = TextCollector(policy, examples, half_tied, cfg, seed=1).collect()
    assert batch.num_groups == 6 and batch.rewards.shape[0] == 24
    assert batch.num_steps > 24  # dropped groups were sampled too
    for g in range(6):
        r = batch.rewards[batch.group_index == g]
        assert float(r.max() - r.min()) > 1e-6
    assert batch.metrics["stats/tied_group_frac"] > 0.2


def _toy_batch(finish=(1, 0, 1, 1), calls=(0, 2, 1, 3), correct=(1.0, 1.0, 0.0, 1.0)) -> TextRollout:
    """2 groups x 2 completions, N = 5 tokens, lengths 5, 5, 3, 2."""
    lengths = torch.tensor([5, 5, 3, 2])
    mask = torch.arange(5)[None] < lengths[:, None]
    ids = torch.full((4, 5), 20) * mask
    ids[0, 1] = 30
    c = torch.tensor(correct)
    return TextRollout(prompt_ids=torch.ones(4, 2, dtype=torch.long), prompt_mask=torch.ones(4, 2, dtype=torch.bool),
                       completion_ids=ids, completion_mask=mask, loss_mask=mask.clone(), logprobs=torch.zeros(4, 5),
                       rewards=c.clone(), scorable=torch.ones(4, dtype=torch.bool),
                       components={"correct": c, "format": torch.tensor([1.0, 1.0, 0.0, 1.0])},
                       group_index=torch.tensor([0, 0, 1, 1]), finish_reason=torch.tensor(finish),
                       num_tool_calls=torch.tensor(calls), num_steps=4, metrics={})


def test_overlong_soft_penalty_and_filter(policy):
    batch = _toy_batch()
    soft = _core(policy, overlong="soft", overlong_cache=2, collect={"max_new_tokens": 5})
    want = batch.rewards + shaping.overlong_penalty(torch.tensor([5, 5, 3, 2]), 5, 2)
    assert torch.allclose(soft.shaped_rewards(batch), want)
    assert soft.shaped_rewards(batch)[0] == pytest.approx(1.0 - 1.0)  # (3 - 5) / 2 = -1 at the limit
    filt = _core(policy, overlong="filter")
    mask = filt.loss_mask(batch)
    assert not mask[1].any() and torch.equal(mask[0], batch.loss_mask[0])


def test_otc_tool_call_reward(policy):
    batch = _toy_batch()
    core = _core(policy, tool_call_reward=True, otc_c=1.0)
    got = core.shaped_rewards(batch)
    # group 0: both correct, fewest calls 0 -> optimal n = 0; group 1: only row 3 correct with 3 calls
    want = torch.tensor([1.0, math.cos(2 * math.pi / 5), 0.0, 1.0])
    assert torch.allclose(got, want, atol=1e-6)


def test_length_penalty_and_selective_mask(policy):
    batch = _toy_batch()
    core = _core(policy, length_penalty=0.5, mask_token_ids=[30], collect={"max_new_tokens": 5})
    want = torch.tensor([1.0 - 0.5, 1.0 - 0.5, 0.0, 1.0 - 0.5 * 2 / 5])
    assert torch.allclose(core.shaped_rewards(batch), want)
    mask = core.loss_mask(batch)
    assert not mask[0, 1] and int(mask.sum()) == int(batch.loss_mask.sum()) - 1


def test_difficulty_scaled_advantages(policy):
    batch = _toy_batch()
    plain, scaled = _core(policy), _core(policy, difficulty_scaling=True)
    a, b = plain.prepare(batch).adv, scaled.prepare(batch).adv
    # group 0 ties (advantage 0 either way); group 1 is harder (accuracy 0.5, format 0.5)
    w = shaping.difficulty_weights(torch.tensor([0.0, 0.5]), torch.tensor([0.0, 0.5]), 1.0, 1.0, 0.25)
    assert torch.allclose(b, a * w[batch.group_index])
    assert float(w[1]) > float(w[0])


def test_running_mean_baseline_is_state(policy):
    core = _core(policy, advantage="running_mean", baseline_decay=0.5)
    batch = _toy_batch()
    first = core.advantages(batch.rewards, batch)
    assert torch.allclose(first, batch.rewards)  # no baseline before the first batch
    second = core.advantages(batch.rewards, batch)
    assert torch.allclose(second, batch.rewards - 0.75)  # bias-corrected EMA of the batch mean 0.75
    state = core.state_dict()
    other = _core(policy, advantage="running_mean", baseline_decay=0.5)
    other.load_state_dict(state)
    assert torch.equal(other.ema, core.ema) and int(other.ema_steps) == 2


LM_CONFIGS = ("grpo_sorting", "drgrpo_sorting", "dapo_sorting", "gspo_sorting", "grpod_sorting",
              "remax_sorting", "rloo_sorting", "lm_reinforce_sorting", "lm_ppo_sorting", "loop_calculator",
              "grpo_demo")


@pytest.mark.parametrize("name", LM_CONFIGS)
def test_shipped_configs_validate(name):
    from pathlib import Path

    from policyopt.app.run import parse_run_config
    from policyopt.core.config import load_yaml

    cfg = parse_run_config(load_yaml(Path(__file__).resolve().parents[2] / "configs" / f"{name}.yaml"))
    assert cfg.model.path == "builtin" and cfg.env is None and cfg.reward.kind == "task"
    assert cfg.trainer.total_steps % (cfg.algo_config.collect.prompts_per_step
                                      * cfg.algo_config.collect.completions_per_prompt) == 0


def test_bad_config_names_the_key():
    from policyopt.app.run import parse_run_config
    from policyopt.core.config import ConfigError

    with pytest.raises(ConfigError, match="grpo.collect.completions_per_prompt"):
        parse_run_config({"algo": "grpo", "grpo": {"collect": {"completions_per_prompt": 0}}})
    with pytest.raises(ConfigError, match="rloo.advantage"):
        parse_run_config({"algo": "rloo", "rloo": {"advantage": "group"}})


def test_serial_groups_s_grpo(policy, examples):
    cfg = CollectConfig(prompts_per_step=4, completions_per_prompt=1, max_new_tokens=10, group_mode="serial",
                        serial_exits=3, exit_text="<answer>")
    batch = TextCollector(policy, examples, length_reward_or_none, cfg, seed=2).collect()
    assert batch.completion_ids.shape[0] == 12 and batch.num_groups == 4 and batch.num_steps == 12
    exit_id = policy.tokenizer.convert_tokens_to_ids("<answer>")
    for g in range(4):
        rows = (batch.group_index == g).nonzero().squeeze(1).tolist()
        full = rows[-1]
        n_full = int(batch.completion_mask[full].sum())
        assert torch.equal(batch.loss_mask[full, :n_full], torch.ones(n_full, dtype=torch.bool))
        for k, row in enumerate(rows[:-1]):
            cut = round((k + 1) * n_full / 3)
            assert torch.equal(batch.completion_ids[row, :cut], batch.completion_ids[full, :cut])  # same path
            assert int(batch.completion_ids[row, cut]) == exit_id and not batch.loss_mask[row, cut]
            assert batch.loss_mask[row, :cut].all()
    # the algorithm turns correctness into S-GRPO's decaying serial rewards
    toy = _toy_batch(correct=(1.0, 1.0, 0.0, 1.0))
    core = _core(policy, collect={"group_mode": "serial", "serial_exits": 2})
    assert torch.allclose(core.shaped_rewards(toy), torch.tensor([1.0, 0.5, 0.0, 1.0]))


def test_shared_prompt_forward_equals_plain_forward(policy, examples):
    from policyopt.algos.lm_forward import grouped_completion_logprobs
    from policyopt.lm.logprobs import completion_logprobs

    cfg = CollectConfig(prompts_per_step=5, completions_per_prompt=4, max_new_tokens=10)
    batch = TextCollector(policy, examples, length_reward_or_none, cfg, seed=4).collect()
    model = policy.model
    rows = torch.tensor([0, 1, 2, 5, 9, 10, 11, 19])  # a minibatch that splits groups
    args = (batch.prompt_ids[rows], batch.prompt_mask[rows], batch.completion_ids[rows], batch.completion_mask[rows])
    plain = completion_logprobs(model, *args, with_entropy=True)
    shared = grouped_completion_logprobs(model, *args, batch.group_index[rows], with_entropy=True, token_chunk=7)
    assert torch.allclose(plain.logprobs, shared.logprobs, atol=1e-5)
    assert torch.allclose(plain.entropy, shared.entropy, atol=1e-5)
    assert torch.allclose(shared.logprobs, batch.logprobs[rows], atol=1e-4)  # = the sampler's own log-probs
    params = [p for p in model.parameters() if p.requires_grad]
    g_plain = torch.autograd.grad((plain.logprobs * 1.7).sum(), params)
    g_shared = torch.autograd.grad((shared.logprobs * 1.7).sum(), params)
    for a, b in zip(g_plain, g_shared):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_lora_grpo_trains_adapters_only_with_disabled_adapter_reference(tmp_path):
    from policyopt.app.run import build_trainer, parse_run_config
    from tests.algos.lm_helpers import run_config

    data = run_config("grpo", cached_tiny_model(), {"learning_rate": 1e-3, "kl_coef": 0.05}, steps=3, prompts=4,
                      group=4, model={"lora_rank": 4})
    trainer = build_trainer(parse_run_config(data), tmp_path)
    algo = trainer.algorithm
    assert algo.policy.has_lora and algo.policy.reference_model is None  # one copy of the base weights
    base = {k: v.clone() for k, v in algo.policy.model.named_parameters() if "lora" not in k}
    record = trainer.run()
    state = algo.state_dict()["policy"]
    assert state and all("lora" in k for k in state)
    assert all(torch.equal(v, dict(algo.policy.model.named_parameters())[k]) for k, v in base.items())
    assert record["stats/kl_ref"] > 0 and math.isfinite(record["loss/policy"])


def test_ppo_critic_values_shared_prompt_equal_plain(tmp_path):
    from policyopt.app.run import build_trainer, parse_run_config
    from tests.algos.lm_helpers import run_config

    data = run_config("lm_ppo", cached_tiny_model(), {}, steps=1, prompts=3, group=4)
    algo, collector = (t := build_trainer(parse_run_config(data), tmp_path)).algorithm, t.collector
    torch.nn.init.normal_(algo.value_head.weight)
    batch = collector.collect()
    shared = algo.values(batch)
    object.__setattr__(algo.config, "share_prompt_forward", False)
    plain = algo.values(batch)
    mask = batch.completion_mask
    assert torch.allclose(shared[mask], plain[mask], atol=1e-4)
