"""Pure loss functions on tensors. Nothing here imports the rest of policyopt."""

from policyopt.losses.advantages import discounted_returns, gae, normalize
from policyopt.losses.kl import kl_estimate
from policyopt.losses.surrogate import masked_mean, policy_gradient_loss, ppo_clip_loss
from policyopt.losses.value import value_loss

__all__ = [
    "discounted_returns", "gae", "kl_estimate", "masked_mean", "normalize",
    "policy_gradient_loss", "ppo_clip_loss", "value_loss",
]
