r"""Preference-optimisation and reward-model losses, as pure functions on tensors.

Inputs are sequence log-probabilities (summed over completion tokens unless a docstring says
otherwise): ``policy_chosen, policy_rejected, ref_chosen, ref_rejected: [B]``; listwise losses take
``[N, K]`` lists with a ``mask [N, K]`` for ragged lists. Losses return **per-example** values
(``[B]`` or ``[N]``) so that callers can weight, split (MPO) or log them; take ``.mean()`` to train.
Reference log-probs never need gradients: compute them once and cache them.

Notation: :math:`h = \log\frac{\pi(y_w)}{\pi_{ref}(y_w)} - \log\frac{\pi(y_l)}{\pi_{ref}(y_l)}`
(:func:`preference_logits`), :math:`\sigma` the logistic function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

LIPO_KINDS = ("lambda", "pair_logistic", "list_mle", "softmax")


def preference_logits(
    policy_chosen: Tensor, policy_rejected: Tensor,
    ref_chosen: Tensor | None = None, ref_rejected: Tensor | None = None,
) -> Tensor:
    """``h [B]`` = chosen log-ratio minus rejected log-ratio (reference-free when refs are None)."""
    h = policy_chosen - policy_rejected
    if ref_chosen is not None or ref_rejected is not None:
        if ref_chosen is None or ref_rejected is None:
            raise ValueError("pass both ref_chosen and ref_rejected, or neither")
        h = h - (ref_chosen - ref_rejected)
    return h


def implicit_rewards(policy_logps: Tensor, ref_logps: Tensor, beta: float) -> Tensor:
    r"""DPO's implicit reward :math:`\beta (\log\pi(y) - \log\pi_{ref}(y))` (detached); for logging
    reward margins and accuracies."""
    return (beta * (policy_logps - ref_logps)).detach()


def dpo_loss(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
    beta: float = 0.1, label_smoothing: float = 0.0,
) -> Tensor:
    r"""DPO (Rafailov et al., 2023, "Direct Preference Optimization", eq. 7):
    :math:`L = -\log\sigma(\beta h)`.

    ``label_smoothing`` = :math:`\epsilon > 0` gives conservative DPO (cDPO; Mitchell, 2023), which
    assumes labels flip with probability :math:`\epsilon`:
    :math:`-(1-\epsilon)\log\sigma(\beta h) - \epsilon\log\sigma(-\beta h)`. Returns ``[B]``.
    """
    if beta <= 0 or not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"need beta > 0 and 0 <= label_smoothing < 0.5, got {beta}, {label_smoothing}")
    z = beta * preference_logits(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    loss = -F.logsigmoid(z)
    if label_smoothing:
        loss = (1.0 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-z)
    return loss


def robust_dpo_loss(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
    beta: float = 0.1, flip_rate: float = 0.1,
) -> Tensor:
    r"""Robust DPO (rDPO; Chowdhury et al., 2024, "Provably Robust DPO"): an unbiased estimate of the
    clean-label loss under label-flip rate :math:`\epsilon`,
    :math:`\frac{(1-\epsilon)\,\ell(h) - \epsilon\,\ell(-h)}{1 - 2\epsilon}` with
    :math:`\ell(h) = -\log\sigma(\beta h)`. Returns ``[B]``."""
    if beta <= 0 or not 0.0 <= flip_rate < 0.5:
        raise ValueError(f"need beta > 0 and 0 <= flip_rate < 0.5, got {beta}, {flip_rate}")
    z = beta * preference_logits(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return ((1.0 - flip_rate) * -F.logsigmoid(z) + flip_rate * F.logsigmoid(-z)) / (1.0 - 2.0 * flip_rate)


def ipo_loss(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, tau: float = 0.1
) -> Tensor:
    r"""IPO (Azar et al., 2023, "A General Theoretical Paradigm to Understand Learning from Human
    Preferences", eq. 17): :math:`L = \big(h - \frac{1}{2\tau}\big)^2`, a squared loss whose minimum is
    at the finite margin :math:`1/(2\tau)` (no drift to infinity on deterministic preferences).
    Pass length-averaged log-probs to reproduce TRL's IPO. Returns ``[B]``."""
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    h = preference_logits(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return (h - 1.0 / (2.0 * tau)) ** 2


def online_ipo_loss(
    policy_a: Tensor, policy_b: Tensor, ref_a: Tensor, ref_b: Tensor, pref_prob: Tensor, tau: float = 0.1
) -> Tensor:
    r"""IPO with a soft label :math:`p = P(y_a \succ y_b)` from a preference oracle, on pairs sampled
    from the current policy (online IPO, Calandriello et al., 2024, "Human Alignment of LLMs through
    Online Preference Optimisation"; the loss EGPO optimises, Zhou et al., 2025):

    .. math:: L = \Big(h_{ab} - \frac{p - 1/2}{\tau}\Big)^2

    equal, up to a constant, to :math:`p\,(h - \frac{1}{2\tau})^2 + (1-p)\,(h + \frac{1}{2\tau})^2`;
    ``p = 1`` is :func:`ipo_loss`. Returns ``[B]``."""
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    h = preference_logits(policy_a, policy_b, ref_a, ref_b)
    return (h - (pref_prob.to(h.dtype) - 0.5) / tau) ** 2


def slic_hf_loss(
    policy_chosen: Tensor, policy_rejected: Tensor, delta: float = 1.0,
    ref_chosen: Tensor | None = None, ref_rejected: Tensor | None = None,
    sft_logps: Tensor | None = None, sft_weight: float = 0.0,
) -> Tensor:
    r"""SLiC-HF (Zhao et al., 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback"):
    a rank-calibration hinge plus a regulariser on reference (SFT) targets,

    .. math:: L = \max(0,\ \delta - \log\pi(y_w) + \log\pi(y_l)) - \lambda \log\pi(y_{ref})

    With ``ref_chosen/ref_rejected`` the hinge acts on the log-ratio difference ``h`` instead (the
    reference-anchored variant). ``sft_logps [B]``: log-probs of the regularisation targets.
    Returns ``[B]``."""
    h = preference_logits(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    loss = (delta - h).clamp_min(0.0)
    if sft_weight:
        if sft_logps is None:
            raise ValueError("sft_weight > 0 needs sft_logps (log-probs of the regularisation targets)")
        loss = loss - sft_weight * sft_logps
    return loss


def rrhf_loss(
    logps_sum: Tensor, lengths: Tensor, rewards: Tensor, mask: Tensor | None = None, sft_weight: float = 1.0
) -> Tensor:
    r"""RRHF (Yuan et al., 2023, "RRHF: Rank Responses to Align Language Models with Human Feedback"):
    with length-normalised scores :math:`p_i = \log\pi(y_i) / |y_i|`,

    .. math:: L = \sum_{r_i < r_j} \max(0,\ p_i - p_j) \;-\; \lambda \log\pi(y_{i'}),
              \quad i' = \arg\max_i r_i

    ``logps_sum, lengths, rewards, mask: [N, K]`` (K responses per query). Returns ``[N]``.
    """
    m = _list_mask(logps_sum, mask)
    logps_sum = torch.where(m, logps_sum, torch.zeros_like(logps_sum))   # padding may hold NaN
    p = logps_sum / lengths.to(logps_sum.dtype).clamp_min(1.0)
    r = torch.where(m, rewards.to(p.dtype), torch.full_like(p, -torch.inf))
    worse = (r[:, :, None] < r[:, None, :]) & m[:, :, None] & m[:, None, :]     # [n, i, j]: r_i < r_j
    rank = ((p[:, :, None] - p[:, None, :]).clamp_min(0.0) * worse).sum((-1, -2))
    best = r.argmax(-1, keepdim=True)
    return rank - sft_weight * logps_sum.gather(1, best).squeeze(1)


# -------------------------------------------------------------------------------------- LiPO


def _list_mask(x: Tensor, mask: Tensor | None) -> Tensor:
    if x.dim() != 2:
        raise ValueError(f"listwise inputs must be [N, K], got shape {tuple(x.shape)}")
    if mask is None:
        return torch.ones_like(x, dtype=torch.bool)
    if mask.shape != x.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} != list shape {tuple(x.shape)}")
    return mask.bool()


def lambda_weights(scores: Tensor, labels: Tensor, mask: Tensor | None = None, ndcg: bool = False) -> Tensor:
    r"""LambdaRank weights (Burges, 2010; as used by LiPO-:math:`\lambda`, Liu et al., 2024):

    .. math:: \Delta_{ij} = |G_i - G_j| \cdot \Big|\frac{1}{D(\tau_i)} - \frac{1}{D(\tau_j)}\Big|,
              \quad G_i = 2^{\psi_i} - 1,\ D(\tau) = \log_2(1 + \tau)

    where :math:`\tau_i` is the 1-based rank of item ``i`` when the list is sorted by ``scores``
    (descending) and :math:`\psi` are the graded ``labels``. With ``ndcg=True`` the weights are
    divided by the ideal DCG, i.e. they are :math:`|\Delta\mathrm{NDCG}_{ij}|`. No gradient.
    ``[N, K] -> [N, K, K]`` (0 on padded items).
    """
    m = _list_mask(scores, mask)
    with torch.no_grad():
        s = torch.where(m, scores, torch.full_like(scores, -torch.inf))
        order = torch.argsort(-s, dim=-1, stable=True)
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(1, s.shape[1] + 1, device=s.device).expand_as(order))
        inv_disc = torch.where(m, 1.0 / torch.log2(1.0 + rank.to(scores.dtype)), torch.zeros_like(scores))
        gain = torch.where(m, torch.exp2(labels.to(scores.dtype)) - 1.0, torch.zeros_like(scores))
        gain_gap = (gain[:, :, None] - gain[:, None, :]).abs()
        delta = gain_gap * (inv_disc[:, :, None] - inv_disc[:, None, :]).abs()
        if ndcg:
            ideal_gain = torch.sort(gain, dim=-1, descending=True).values
            pos = torch.arange(1, s.shape[1] + 1, device=s.device, dtype=scores.dtype)
            idcg = (ideal_gain / torch.log2(1.0 + pos)).sum(-1)
            delta = delta / idcg.clamp_min(1e-12)[:, None, None]
        return delta * (m[:, :, None] & m[:, None, :])


def lipo_loss(
    policy_logps: Tensor, ref_logps: Tensor, labels: Tensor, mask: Tensor | None = None,
    beta: float = 0.1, kind: str = "lambda", ndcg: bool = False,
) -> Tensor:
    r"""LiPO listwise preference optimisation (Liu et al., 2024, "LiPO: Listwise Preference
    Optimization through Learning-to-Rank"). Scores :math:`s_i = \beta(\log\pi(y_i) - \log\pi_{ref}(y_i))`,
    graded labels :math:`\psi_i` (higher = better). ``kind``:

    - ``"lambda"`` (LiPO-:math:`\lambda`): :math:`-\sum_{\psi_i > \psi_j} \Delta_{ij} \log\sigma(s_i - s_j)`
      with :func:`lambda_weights` from the current scores;
    - ``"pair_logistic"`` (DPO-BT over all pairs): :math:`-\sum_{\psi_i > \psi_j} \log\sigma(s_i - s_j)`;
    - ``"list_mle"`` (Plackett-Luce, DPO-PL):
      :math:`-\sum_k \log \frac{e^{s_{\pi(k)}}}{\sum_{l \ge k} e^{s_{\pi(l)}}}` with :math:`\pi`
      sorting by label (descending);
    - ``"softmax"`` (ListNet): :math:`-\sum_i \frac{\psi_i}{\sum_j \psi_j} \log\mathrm{softmax}(s)_i`
      (labels >= 0).

    With a list of two (:math:`\psi_w > \psi_l`) the last three equal DPO exactly and ``"lambda"`` is
    DPO times :math:`\Delta_{wl}`. Inputs ``[N, K]``; returns ``[N]`` (sums over pairs/positions, as in
    the paper).
    """
    m = _list_mask(policy_logps, mask)
    s = beta * (policy_logps - ref_logps)
    s = torch.where(m, s, torch.zeros_like(s))     # padding may hold NaN: keep it out of every op
    psi = torch.where(m, labels.to(s.dtype), torch.zeros_like(s))
    if kind in ("lambda", "pair_logistic"):
        better = (psi[:, :, None] > psi[:, None, :]) & m[:, :, None] & m[:, None, :]
        pair = -F.logsigmoid(s[:, :, None] - s[:, None, :])
        weight = better.to(s.dtype)
        if kind == "lambda":
            weight = weight * lambda_weights(s, psi, m, ndcg)
        return (weight * torch.where(better, pair, torch.zeros_like(pair))).sum((-1, -2))
    if kind == "list_mle":
        key = torch.where(m, psi, torch.full_like(psi, -torch.inf))
        order = torch.argsort(-key, dim=-1, stable=True)
        s_sorted = torch.gather(torch.where(m, s, torch.full_like(s, -torch.inf)), 1, order)
        m_sorted = torch.gather(m, 1, order)
        tail_lse = torch.logcumsumexp(s_sorted.flip(-1), dim=-1).flip(-1)
        terms = torch.where(m_sorted, s_sorted - tail_lse, torch.zeros_like(s_sorted))
        return -terms.sum(-1)
    if kind == "softmax":
        if bool((psi[m] < 0).any()):
            raise ValueError("lipo_loss(kind='softmax') needs labels >= 0")
        target = torch.where(m, psi, torch.zeros_like(psi))
        target = target / target.sum(-1, keepdim=True).clamp_min(1e-12)
        logp = torch.log_softmax(torch.where(m, s, torch.full_like(s, -torch.inf)), dim=-1)
        return -(target * torch.where(m, logp, torch.zeros_like(logp))).sum(-1)
    raise ValueError(f"unknown LiPO kind {kind!r}: expected one of {LIPO_KINDS}")


# ----------------------------------------------------------------------------- reward models


def bradley_terry_loss(
    reward_chosen: Tensor, reward_rejected: Tensor, margin: Tensor | float | None = None,
    label_smoothing: Tensor | float = 0.0, flip: Tensor | None = None,
) -> Tensor:
    r"""Bradley-Terry reward-model loss (Bradley & Terry, 1952; Ouyang et al., 2022):

    .. math:: L = -(1-\epsilon)\log\sigma(d) - \epsilon\log\sigma(-d), \quad d = \pm(r_c - r_r) - m

    ``margin`` m (Llama 2, Touvron et al., 2023; adaptive per pair in "Secrets of RLHF Part II",
    Wang et al., 2024), ``label_smoothing`` :math:`\epsilon` (scalar or per pair ``[B]``) and ``flip``
    (bool ``[B]``: swap chosen and rejected) take per-pair tensors from :func:`strength_treatment`.
    Returns ``[B]``."""
    diff = reward_chosen - reward_rejected
    if flip is not None:
        diff = torch.where(flip.bool(), -diff, diff)
    if margin is not None:
        diff = diff - margin
    loss = -F.logsigmoid(diff)
    eps = torch.as_tensor(label_smoothing, dtype=diff.dtype, device=diff.device)
    if bool((eps != 0).any()):
        loss = (1.0 - eps) * loss - eps * F.logsigmoid(-diff)
    return loss


def preference_strength(ensemble_chosen: Tensor, ensemble_rejected: Tensor) -> tuple[Tensor, Tensor]:
    r"""Preference strength of each pair under an ensemble of ``M`` reward models ("Secrets of RLHF
    Part II", Wang et al., 2024): :math:`d_{m} = r_m(y_c) - r_m(y_r)`; returns ``(mean [B], std [B])``
    over the ensemble (unbiased std; 0 when ``M = 1``). Inputs ``[M, B]``. No gradient."""
    if ensemble_chosen.dim() != 2 or ensemble_chosen.shape != ensemble_rejected.shape:
        raise ValueError(f"ensemble rewards must both be [M, B], got {tuple(ensemble_chosen.shape)} "
                         f"and {tuple(ensemble_rejected.shape)}")
    with torch.no_grad():
        d = ensemble_chosen - ensemble_rejected
        std = d.std(0) if d.shape[0] > 1 else torch.zeros_like(d[0])
        return d.mean(0), std


class StrengthTreatment(NamedTuple):
    """Per-pair inputs for :func:`bradley_terry_loss`: ``flip`` (bool), ``label_smoothing``, ``margin``."""

    flip: Tensor
    label_smoothing: Tensor
    margin: Tensor


def strength_treatment(
    strength: Tensor, flip_below: float | None = 0.0, soften_below: float | None = None,
    smoothing: float = 0.1, margin_scale: float = 0.0,
) -> StrengthTreatment:
    r"""The data treatments of "Secrets of RLHF Part II" (Wang et al., 2024) from the ensemble's mean
    preference strength :math:`\mu` (:func:`preference_strength`):

    - **flip** pairs the ensemble strongly disagrees with (:math:`\mu <` ``flip_below``);
    - **soften** ambiguous pairs (:math:`|\mu| <` ``soften_below``) with label smoothing ``smoothing``;
    - **adaptive margin** :math:`m = \text{margin\_scale} \cdot \max(0, \pm\mu)` (after any flip) on the
      pairs that are not softened, so clearly separated pairs are pushed further apart.
    """
    mu = strength.detach()
    flip = mu < flip_below if flip_below is not None else torch.zeros_like(mu, dtype=torch.bool)
    soft = mu.abs() < soften_below if soften_below is not None else torch.zeros_like(mu, dtype=torch.bool)
    eps = torch.where(soft, torch.full_like(mu, smoothing), torch.zeros_like(mu))
    oriented = torch.where(flip, -mu, mu)
    margin = torch.where(soft, torch.zeros_like(mu), margin_scale * oriented.clamp_min(0.0))
    return StrengthTreatment(flip, eps, margin)


def info_nce_loss(anchors: Tensor, positives: Tensor, temperature: float = 0.1) -> Tensor:
    r"""InfoNCE / SimCSE contrastive loss (van den Oord et al., 2018; Gao et al., 2021), the
    auxiliary term of "Secrets of RLHF Part II": row ``i`` of ``positives [B, D]`` is the positive of
    ``anchors[i]`` (e.g. two dropout views of a pair's chosen-minus-rejected representation), the
    other rows are negatives:
    :math:`-\frac1B\sum_i \log\frac{e^{\cos(a_i,p_i)/T}}{\sum_j e^{\cos(a_i,p_j)/T}}`. Returns a scalar."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = F.normalize(anchors, dim=-1) @ F.normalize(positives, dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(anchors.shape[0], device=anchors.device))


def binary_feedback_loss(scores: Tensor, labels: Tensor, pos_weight: float | None = None) -> Tensor:
    r"""Binary cross-entropy on like / no-like signals for a reward model trained on single responses
    ("RL from User Feedback", Han et al., 2025): :math:`-[y\log\sigma(r) + (1-y)\log(1-\sigma(r))]`.
    ``pos_weight`` re-weights the (often rare) positives. Returns ``[B]``."""
    pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=scores.dtype, device=scores.device)
    target = labels.to(scores.dtype)
    return F.binary_cross_entropy_with_logits(scores, target, pos_weight=pw, reduction="none")


# -------------------------------------------------------------------------- self-play / Nash


def win_rate_rewards(preferences: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""SPO's self-play reward (Swamy et al., 2024, "A Minimaximalist Approach to RLHF"): a completion's
    reward is its average win probability against the other completions of its group,
    :math:`r_i = \frac{1}{n-1}\sum_{j \ne i} P(y_i \succ y_j)`, which needs no transitive (reward-model)
    structure. ``preferences [P, G, G]`` with ``[p, i, j] = P(y_i > y_j)``; ``mask [P, G]`` False =
    unscorable (0, left out of the others' averages). Returns ``[P, G]``."""
    if preferences.dim() != 3 or preferences.shape[1] != preferences.shape[2]:
        raise ValueError(f"preferences must be [P, G, G], got {tuple(preferences.shape)}")
    G = preferences.shape[1]
    m = torch.ones(preferences.shape[:2], dtype=torch.bool, device=preferences.device) if mask is None \
        else mask.bool()
    others = m[:, None, :] & ~torch.eye(G, dtype=torch.bool, device=preferences.device)
    wins = torch.where(others, preferences, torch.zeros_like(preferences)).sum(-1)
    n = others.sum(-1).to(preferences.dtype)
    return torch.where(m & (n > 0), wins / n.clamp_min(1.0), torch.zeros_like(wins))


def inpo_loss(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
    prev_chosen: Tensor, prev_rejected: Tensor, eta: float = 1.0, tau: float = 0.1,
) -> Tensor:
    r"""INPO (Zhang et al., 2024, "Iterative Nash Policy Optimization: Aligning LLMs with General
    Preferences via No-Regret Learning"). Pairs are sampled from the previous iterate
    :math:`\pi_t` and labelled by a preference oracle; online mirror descent on the game regularised
    towards :math:`\pi_{ref}` reduces to the squared loss

    .. math::
        h_t = \log\frac{\pi(y_w)}{\pi(y_l)} - \frac{\tau}{\eta}\log\frac{\pi_{ref}(y_w)}{\pi_{ref}(y_l)}
              - \Big(1 - \frac{\tau}{\eta}\Big)\log\frac{\pi_t(y_w)}{\pi_t(y_l)}, \qquad
        L = \Big(h_t - \frac{1}{2\eta}\Big)^2

    (``prev_*``: :math:`\pi_t`'s log-probs; :math:`0 < \tau \le \eta`). With :math:`\tau = \eta` this is
    IPO with :math:`\tau_{IPO} = \eta`. Returns ``[B]``."""
    if eta <= 0 or not 0 < tau <= eta:
        raise ValueError(f"need eta > 0 and 0 < tau <= eta, got eta={eta}, tau={tau}")
    w = tau / eta
    h = (policy_chosen - policy_rejected) - w * (ref_chosen - ref_rejected) - (1.0 - w) * (
        prev_chosen - prev_rejected)
    return (h - 1.0 / (2.0 * eta)) ** 2


def extragradient_step(
    params: Sequence[Tensor], grad_fn: Callable[[Sequence[Tensor]], Sequence[Tensor]], lr: float
) -> list[Tensor]:
    r"""One extragradient step (Korpelevich, 1976), the update of EGPO (Zhou et al., 2025,
    "Extragradient Preference Optimization"): evaluate the gradient at an extrapolated point and
    apply it from the current one,

    .. math:: \theta_{t+1/2} = \theta_t - \eta\, g(\theta_t), \quad
              \theta_{t+1} = \theta_t - \eta\, g(\theta_{t+1/2})

    ``grad_fn(params) -> grads`` (for EGPO: the gradient of :func:`online_ipo_loss` on pairs sampled
    from the policy at those parameters). Returns new tensors; the inputs are not modified. On
    games (bilinear saddles, intransitive preferences) this converges where plain gradient
    steps cycle or diverge."""
    g0 = grad_fn(params)
    half = [p - lr * g for p, g in zip(params, g0, strict=True)]
    g1 = grad_fn(half)
    return [p - lr * g for p, g in zip(params, g1, strict=True)]
