"""Pure maths for RL on text: masked statistics, GAE, KL estimators and controllers, policy/value losses.

Every function is pure (tensors in, tensors out) and documents its shapes; tests check them against
numbers worked out by hand.
"""

from rl4text.core.gae import compute_gae
from rl4text.core.kl import AdaptiveKLController, FixedKLController, kl_estimate, make_kl_controller
from rl4text.core.losses import approx_kl, clipped_value_loss, entropy_from_logits, ppo_policy_loss
from rl4text.core.stats import explained_variance, masked_mean, masked_var, masked_whiten

__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "approx_kl",
    "clipped_value_loss",
    "compute_gae",
    "entropy_from_logits",
    "explained_variance",
    "kl_estimate",
    "make_kl_controller",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "ppo_policy_loss",
]
