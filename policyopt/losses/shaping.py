r"""Reward shaping for language-model RL, as pure functions on batch-first tensors.

Each function turns raw per-completion quantities (correctness, lengths, tool-call counts ...)
into a shaped reward or a per-prompt weight; combine the result with an advantage estimator of
:mod:`policyopt.losses.group`. Shapes: ``[P, G]`` = prompts x completions, or any shape where
stated. Nothing here imports the rest of policyopt.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def overlong_penalty(lengths: Tensor, max_length: int, cache_length: int) -> Tensor:
    r"""DAPO's soft overlong punishment (Yu et al., 2025, "DAPO", eq. 13), added to the reward:

    .. math::
        R_{len}(y) = \begin{cases} 0 & |y| \le L_{max} - L_{cache} \\
        \frac{(L_{max} - L_{cache}) - |y|}{L_{cache}} & L_{max} - L_{cache} < |y| \le L_{max} \\
        -1 & |y| > L_{max} \end{cases}

    ``lengths``: any shape, completion lengths in tokens. Returns a float tensor of the same shape.
    """
    if not 0 < cache_length <= max_length:
        raise ValueError(f"need 0 < cache_length <= max_length, got {cache_length}, {max_length}")
    length = lengths.to(torch.float32)
    soft_start = float(max_length - cache_length)
    ramp = (soft_start - length) / cache_length
    out = torch.where(length <= soft_start, torch.zeros_like(length), ramp)
    return torch.where(length > max_length, torch.full_like(length, -1.0), out)


def length_penalty(
    rewards: Tensor, lengths: Tensor, max_length: int, coef: float, correct: Tensor | None = None
) -> Tensor:
    r"""Linear thinking-cost penalty :math:`r' = r - c \cdot |y| / L_{max}`, applied only where
    ``correct`` is True when given (so that a short wrong answer is never preferred to a long
    wrong one). This is the explicit CoT-cost term of the adaptive-thinking literature (AdaCoT,
    Lou et al., 2025; "Think or Not?", Wang et al., 2025, which reaches short outputs by thought
    dropout rather than a penalty). Any shape, all inputs the same shape."""
    if max_length <= 0 or coef < 0:
        raise ValueError(f"need max_length > 0 and coef >= 0, got {max_length}, {coef}")
    pen = coef * lengths.to(rewards.dtype) / max_length
    if correct is not None:
        pen = pen * correct.to(rewards.dtype)
    return rewards - pen


def group_length_reward(lengths: Tensor, correct: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Kimi k1.5's group-relative length reward (Kimi Team, 2025, "Kimi k1.5", sec. 2.3.3):

    .. math:: \lambda_i = 0.5 - \frac{|y_i| - L_{min}}{L_{max} - L_{min}}, \qquad
              R_{len,i} = \lambda_i \text{ if correct else } \min(0, \lambda_i)

    with :math:`L_{min}, L_{max}` over the group's (scorable) completions; 0 where all lengths tie
    or ``mask`` is False. ``lengths, correct, mask``: ``[P, G]``. Add to the correctness reward.
    """
    if lengths.dim() != 2 or correct.shape != lengths.shape:
        raise ValueError(f"lengths and correct must both be [P, G], "
                         f"got {tuple(lengths.shape)}, {tuple(correct.shape)}")
    m = torch.ones_like(correct, dtype=torch.bool) if mask is None else mask.bool()
    length = lengths.to(torch.float32)
    lo = torch.where(m, length, torch.full_like(length, math.inf)).amin(-1, keepdim=True)
    hi = torch.where(m, length, torch.full_like(length, -math.inf)).amax(-1, keepdim=True)
    span = hi - lo
    lam = 0.5 - (length - lo) / span.clamp_min(1e-12)
    out = torch.where(correct.bool(), lam, lam.clamp_max(0.0))
    return torch.where(m & (span > 0), out, torch.zeros_like(out))


def serial_group_rewards(correct: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""S-GRPO's decaying reward for a serial group (Dai et al., 2025, "S-GRPO: Early Exit via
    Reinforcement Learning in Reasoning Models"): one reasoning path is cut at ``m`` exit
    positions, ordered from earliest to latest, and an answer is produced at each. A correct exit
    earns :math:`1 / 2^{N_{right} - 1}`, where :math:`N_{right}` counts the correct exits up to and
    including this one; a wrong exit earns 0. So the earliest correct exit gets 1, the next 1/2 ...

    ``correct [P, m]`` bool, columns ordered by exit position; ``mask`` False = unscorable (0,
    and not counted). Returns ``[P, m]`` float. Feed to :func:`group.group_relative_advantages`.
    """
    c = correct.bool()
    if mask is not None:
        c = c & mask.bool()
    n_right = torch.cumsum(c.to(torch.float32), dim=-1)
    return torch.where(c, 0.5 ** (n_right - 1.0), torch.zeros_like(n_right))


def optimal_tool_calls(num_calls: Tensor, correct: Tensor, mask: Tensor | None = None) -> Tensor:
    """OTC-GRPO's estimate of the optimal number of tool calls of each prompt: the fewest calls among
    its correct completions. ``num_calls, correct: [P, G]`` -> ``[P]`` float, NaN where no completion is
    correct (the caller may keep a running per-question minimum across epochs, as the paper does)."""
    c = correct.bool() if mask is None else correct.bool() & mask.bool()
    calls = num_calls.to(torch.float32)
    calls = torch.where(c, calls, torch.full_like(calls, math.inf))
    best = calls.amin(-1)
    return torch.where(torch.isinf(best), torch.full_like(best, math.nan), best)


def tool_call_rewards(
    correctness: Tensor,
    num_calls: Tensor,
    optimal_calls: Tensor | None = None,
    c: float = 1.0,
    alpha: float = 1.0,
) -> Tensor:
    r"""OTC's tool-integrated reward (Wang et al., 2025, "OTC: Optimal Tool Calls via Reinforcement
    Learning"): :math:`r = \alpha \cdot r_{tool} \cdot r_{correct}`, with ``m`` = calls made.

    Without ``optimal_calls`` (OTC-PPO): :math:`r_{tool} = \cos\big(\frac{m \pi}{2m + c}\big)`
    (1 at ``m = 0``, decaying towards 0). With ``optimal_calls`` ``n`` (OTC-GRPO; broadcastable to
    ``num_calls``, e.g. ``[P, 1]``; NaN = unknown -> the OTC-PPO form):

    .. math::
        f(m, n) = \begin{cases} 0 & m = n = 0 \\ m & n = 0 \\ \frac{2nm}{m + n} & \text{else}\end{cases}
        \qquad
        r_{tool} = \begin{cases} 1 & f = n = 0 \\ \cos\big(\frac{m\pi}{2m + c}\big) & n = 0 \\
        \sin\big(\frac{f(m, n)\,\pi}{2n}\big) & \text{else} \end{cases}

    so ``m == n`` scores 1 and both fewer and more calls than optimal score less.
    """
    if c <= 0:
        raise ValueError(f"smoothing constant c must be > 0, got {c}")
    m = num_calls.to(torch.float32)
    r_ppo = torch.cos(m * math.pi / (2.0 * m + c))
    if optimal_calls is None:
        r_tool = r_ppo
    else:
        n = torch.broadcast_to(optimal_calls.to(torch.float32), m.shape)
        known = ~torch.isnan(n)
        n0 = torch.where(known, n, torch.zeros_like(n))
        f = 2.0 * n0 * m / (m + n0).clamp_min(1e-12)
        r_grpo = torch.sin(f * math.pi / (2.0 * n0.clamp_min(1e-12)))
        r_tool = torch.where(known & (n0 > 0), r_grpo, r_ppo)
    return alpha * r_tool * correctness.to(torch.float32)


def cot_trigger_rewards(
    base_rewards: Tensor,
    used_cot: Tensor,
    needs_cot: Tensor,
    format_ok: Tensor | None = None,
    alpha_miss: float = 0.0,
    alpha_over: float = 0.0,
    gamma_format: float = 0.0,
) -> Tensor:
    r"""AdaCoT's penalised reward (Lou et al., 2025, "AdaCoT: Pareto-Optimal Adaptive Chain-of-Thought
    Triggering via RL"):

    .. math:: R = R_{base} - \alpha_1 P_{miss} - \alpha_2 P_{over} - \gamma P_{fmt}

    :math:`P_{miss}` = 1 when the query needs CoT and the response skipped it, :math:`P_{over}` = 1
    when it thought although it did not need to, :math:`P_{fmt}` = 1 for a malformed response.
    Sweeping ``(alpha_miss, alpha_over)`` traces the accuracy / CoT-rate Pareto front. Any shape.
    """
    used, need = used_cot.bool(), needs_cot.bool()
    dt = base_rewards.dtype
    out = base_rewards - alpha_miss * (need & ~used).to(dt) - alpha_over * (~need & used).to(dt)
    if format_ok is not None:
        out = out - gamma_format * (~format_ok.bool()).to(dt)
    return out


def cosine_hardness(x: Tensor, y: Tensor) -> Tensor:
    """Row-wise data-level hardness ``(1 - cos(x_i, y_i)) / 2`` in ``[0, 1]`` from two ``[P, D]``
    embedding batches (e.g. a prompt and its reference response under a text encoder)."""
    return 0.5 * (1.0 - torch.nn.functional.cosine_similarity(x, y, dim=-1))


def difficulty_weights(
    data_hardness: Tensor,
    reward_gap: Tensor,
    alpha: float = 1.0,
    beta: float = 1.0,
    temperature: float = 1.0,
    normalize: bool = True,
) -> Tensor:
    r"""Per-prompt difficulty scale of GRPO-S (Cheng et al., 2025, "Inverse Reinforcement Learning
    with Dynamic Reward Scaling for LLM Alignment", DR-IRL), which scales the learning signal by
    data-level hardness and model-level responsiveness (the reward gap). Form used here:

    .. math:: w_p = 1 + \alpha\, h_p + \beta\, \sigma(g_p / T)

    ``data_hardness [P]`` in [0, 1] (e.g. :func:`cosine_hardness`), ``reward_gap [P]`` = the reward
    the prompt should reach minus what the policy reaches (large = the model has not learned it).
    With ``normalize`` the weights are divided by their mean (the update's overall scale stays).
    Multiply the *advantages* by ``w[:, None]``: scaling raw rewards cancels under std normalisation.
    The paper states the two factors, not this exact combination; alpha/beta/T are ours to tune.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    w = 1.0 + alpha * data_hardness + beta * torch.sigmoid(reward_gap / temperature)
    if normalize:
        w = w / w.mean().clamp_min(1e-12)
    return w
