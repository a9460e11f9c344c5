"""A user reward function, loaded by `reward: {kind: python, function: configs/rewards/closeness.py:reward}`.

The contract (policyopt.lm.reward.RewardFn): called with the batch's prompts, completions and the
per-prompt metadata (every JSONL column except the prompt; the answer column also as "answer"); returns
one float per completion, or None where a completion cannot be scored (it is then masked out of the
loss, never scored 0). Exceptions and NaN are caught and counted by the run's reward guard.
"""

from policyopt.lm.rewards import extract_answer


def reward(prompts, completions, metadata):
    """1 for the exact sum; partial credit 1 - |error| / 10 down to 0 for a near miss; 0 for no number."""
    out = []
    for completion, meta in zip(completions, metadata):
        if meta.get("target") is None:
            out.append(None)  # no ground truth: unscorable
            continue
        text = extract_answer(completion).strip()
        try:
            got = int(text)
        except ValueError:
            out.append(0.0)
            continue
        out.append(max(0.0, 1.0 - abs(got - int(meta["target"])) / 10.0))
    return out
