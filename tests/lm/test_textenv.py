"""Text environments: safe calculator, token-in/token-out trajectories without re-tokenisation drift."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from policyopt.lm.logprobs import completion_logprobs
from policyopt.lm.policy import LMPolicy
from policyopt.lm.sampling import Samples, SamplingConfig
from policyopt.lm.tasks import TaskExample
from policyopt.lm.textenv import CalculatorEnv, TextEnv, calculate, collate, info_summary, rollout
from policyopt.lm.tokenizer import build_char_tokenizer

EXAMPLE = TaskExample("12*7=", "84", {"task": "multiplication", "answer": "84"})


def chars(tok, text: str) -> list[int]:
    """One token per character, even for '<answer>' (which the tokenizer would encode as one tag token)."""
    return [tok.convert_tokens_to_ids(c) for c in text]


def scripted(turns: list[list[list[int]]]):
    """A sampler returning pre-written completions: turns[t][episode] (for the live episodes, in order)."""
    calls = iter(turns)

    def sampler(contexts):
        rows = next(calls)
        assert len(rows) == len(contexts)
        width = max(len(r) for r in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), True
        lp = -torch.arange(1, width + 1, dtype=torch.float).expand(len(rows), width) * mask
        zeros = torch.zeros(len(rows), dtype=torch.long)
        return Samples(ids[:, :1], mask[:, :1], ids, mask, lp, lp * 2, zeros, zeros)

    return sampler


def test_calculate_is_safe_and_exact():
    assert calculate("12*7") == "84"
    assert calculate(" (3 + 4) * 2 ") == "14"
    assert calculate("7/2") == "3.5" and calculate("1/3") == "0.333333"
    assert calculate("-3*2") == "-6" and calculate("2*-3") == "-6"
    for bad in ["__import__('os').system('x')", "2**100000", "1/0", "abs(-1)", "x+1", "1" * 100, "", "3 +"]:
        assert calculate(bad) == "error", bad


def test_tool_episode_trajectory_is_the_concatenation_of_turns():
    tok = build_char_tokenizer()
    env = CalculatorEnv(tok, [EXAMPLE], max_turns=4)
    assert isinstance(env, TextEnv)
    prompt, info = env.reset(seed=0)
    assert tok.decode(prompt, skip_special_tokens=True) == "12*7=" and info["answer"] == "84"
    turn1 = chars(tok, "hmm <calc>12*7</calc>")
    turn2 = chars(tok, "<answer>84</answer>") + [tok.eos_token_id]
    [traj] = rollout(scripted([[turn1], [turn2]]), [CalculatorEnv(tok, [EXAMPLE])], seeds=[0])
    result = tok("<result>84</result>", add_special_tokens=False).input_ids
    assert traj.token_ids == prompt + turn1 + result + turn2
    assert traj.policy_mask == [False] * len(prompt) + [True] * len(turn1) + [False] * len(result) + [True] * len(turn2)
    assert traj.turn_rewards == [0.0, 1.0] and traj.reward == 1.0 and traj.terminated and not traj.truncated
    assert traj.info["tool_result"] == "84" and traj.info["correct"]
    # the sampler's log-probs sit exactly on the policy tokens
    assert traj.logprobs[len(prompt): len(prompt) + 3] == [-1.0, -2.0, -3.0]
    assert traj.logprobs[len(prompt) + len(turn1): len(prompt) + len(turn1) + len(result)] == [0.0] * len(result)
    # decoding and re-encoding would have changed the ids (the tag becomes one token): no drift here
    reencoded = tok(tok.decode(traj.token_ids, skip_special_tokens=False), add_special_tokens=False).input_ids
    assert reencoded != traj.token_ids


def test_wrong_answer_no_answer_and_turn_limit():
    tok = build_char_tokenizer()
    call = chars(tok, "<calc>2+2</calc>")
    wrong = chars(tok, "<answer>85</answer>")
    # turn 0: a calls the tool, b answers wrongly, c calls; turn 1 (a and c live): a answers untagged, c calls
    trajs = rollout(scripted([[call, wrong, call], [chars(tok, "84"), call]]),
                    [CalculatorEnv(tok, [EXAMPLE], max_turns=2) for _ in range(3)], max_turns=5)
    a, b, c = trajs
    assert a.turn_rewards == [0.0, 0.0] and a.terminated and a.info["answer"] is None
    assert b.turn_rewards == [0.0] and b.terminated and b.info["correct"] is False
    assert c.turn_rewards == [0.0, 0.0] and c.truncated and not c.terminated  # env's max_turns = 2
    assert c.info["tool_result"] == "4" and c.token_ids[-len(call):] == call  # no observation after the end
    assert info_summary(trajs)["episode/truncated"] == pytest.approx(1 / 3)
    with pytest.raises(RuntimeError, match="before reset"):
        CalculatorEnv(tok, [EXAMPLE]).step([1])
    with pytest.raises(ValueError, match="empty"):
        CalculatorEnv(tok, [])


class CountdownEchoEnv:
    """A test env that always answers with a fixed observation for ``turns`` turns."""

    stop_strings: tuple[str, ...] = ()

    def __init__(self, tok, turns: int):
        self.tok, self.turns, self.t = tok, turns, 0

    def reset(self, *, seed=None):
        self.t = 0
        return self.tok("go:", add_special_tokens=True).input_ids + [7 + (seed or 0)], {}

    def step(self, completion_ids):
        self.t += 1
        done = self.t >= self.turns
        obs = [] if done else self.tok("<answer>ok", add_special_tokens=False).input_ids
        return obs, float(len(completion_ids)), done, False, {}


def test_rollout_with_real_sampler_logprobs_match_training_forward():
    tok = build_char_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, pad_token_id=tok.pad_token_id)
    policy = LMPolicy(LlamaForCausalLM(cfg).eval(), tok)
    gen = torch.Generator().manual_seed(0)
    seen = []

    def sampler(contexts):
        s = policy.sample(contexts, SamplingConfig(max_new_tokens=5), gen)
        seen.append((contexts, s.completion_lists()))
        return s

    envs = [CountdownEchoEnv(tok, turns) for turns in (1, 3, 2)]
    trajs = rollout(sampler, envs, seeds=[0, 1, 2])
    assert [len(t.turn_rewards) for t in trajs] == [1, 3, 2]
    assert [len(ctx) for ctx, _ in seen] == [3, 2, 1]  # finished episodes leave the batch
    # every context handed to the sampler is a prefix of the final trajectory (token-in/token-out)
    for contexts, completions in seen:
        for ctx, comp in zip(contexts, completions):
            owner = next(t for t in trajs if t.token_ids[: len(ctx) + len(comp)] == ctx + comp)
            assert owner is not None
    batch = collate(trajs, tok.pad_token_id)
    assert batch.policy_mask.sum().item() == sum(sum(t.policy_mask) for t in trajs)
    assert torch.equal(batch.rewards, torch.tensor([t.reward for t in trajs]))
    with torch.no_grad():
        lp = completion_logprobs(policy.model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                 batch.completion_mask).logprobs
    torch.testing.assert_close(lp * batch.policy_mask, batch.raw_logprobs, atol=1e-5, rtol=0)
    assert (batch.raw_logprobs[batch.completion_mask & ~batch.policy_mask] == 0).all()
