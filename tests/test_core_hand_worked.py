"""Every branch of the pure maths in ``rl4text.core``, on numbers worked out by hand (arithmetic in the comments).

Each case is chosen so that the branch it names changes the number: a plausible wrong formula (γ dropped from the
bootstrap, the value clip ignored, k3 written as k2, statistics over padding, ...) fails at least one assertion.
CONTRIBUTING.md lists the bugs planted to check this and the test that caught each.
"""

import math

import pytest
import torch

from rl4text.core import (
    AdaptiveKLController,
    FixedKLController,
    approx_kl,
    clipped_value_loss,
    compute_gae,
    entropy_from_logits,
    explained_variance,
    kl_estimate,
    make_kl_controller,
    masked_mean,
    masked_var,
    masked_whiten,
    ppo_policy_loss,
)
from rl4text.core.shaping import kl_penalized_rewards, last_token_index

# ------------------------------------------------------------------------------------------------------ GAE

# one row, three real tokens, the episode ends after the last one; gamma = .9 with non-zero values
R3 = torch.tensor([[0.5, 0.0, 1.0]])
V3 = torch.tensor([[1.0, 2.0, 3.0]])
M3 = torch.ones(1, 3)


def test_gae_discounts_the_bootstrapped_value_lambda_below_one():
    # gamma = .9, lam = .8 (gamma*lam = .72); delta_t = r_t + gamma V_{t+1} - V_t, V_3 = 0 (terminal)
    #   t2: delta = 1 + 0       - 3 = -2      A2 = -2
    #   t1: delta = 0 + .9 * 3  - 2 = .7      A1 = .7  + .72 * (-2)   = -.74
    #   t0: delta = .5 + .9 * 2 - 1 = 1.3     A0 = 1.3 + .72 * (-.74) = .7672
    # returns = A + V = [1.7672, 1.26, 1.0]
    # (without gamma in the bootstrap: delta1 = 1, delta0 = 1.5 -> A = [.852, -.44, -2]; without gamma in the
    #  recursion (lam only): A1 = .7 - 1.6 = -.9)
    adv, ret = compute_gae(R3, V3, M3, gamma=0.9, lam=0.8)
    torch.testing.assert_close(adv, torch.tensor([[0.7672, -0.74, -2.0]]))
    torch.testing.assert_close(ret, torch.tensor([[1.7672, 1.26, 1.0]]))


def test_gae_lambda_one_is_the_discounted_return_minus_the_value():
    # lam = 1: A_t = G_t - V_t with G the discounted return: G2 = 1, G1 = .9 * 1 = .9, G0 = .5 + .81 = 1.31
    #   A = G - V = [.31, -1.1, -2]; by the recursion A1 = .7 + .9 * (-2) = -1.1, A0 = 1.3 + .9 * (-1.1) = .31
    #   returns = G = [1.31, .9, 1.0] (the critic's target is the Monte-Carlo return)
    adv, ret = compute_gae(R3, V3, M3, gamma=0.9, lam=1.0)
    torch.testing.assert_close(adv, torch.tensor([[0.31, -1.1, -2.0]]))
    torch.testing.assert_close(ret, torch.tensor([[1.31, 0.9, 1.0]]))


def test_gae_lambda_zero_is_the_one_step_td_error():
    # lam = 0: A_t = delta_t = [1.3, .7, -2] (values above); returns = r_t + gamma V_{t+1} = [2.3, 2.7, 1.0]
    adv, ret = compute_gae(R3, V3, M3, gamma=0.9, lam=0.0)
    torch.testing.assert_close(adv, torch.tensor([[1.3, 0.7, -2.0]]))
    torch.testing.assert_close(ret, torch.tensor([[2.3, 2.7, 1.0]]))


def test_gae_truncated_and_eos_rows_in_one_padded_batch():
    # row 0 is truncated at max_new_tokens (no EOS, mask runs to the end of the batch): the episode ends there,
    #   so nothing is bootstrapped after its last token (the reward is the finished text's); same numbers as
    #   the lam = .8 case above.
    # row 1 ends with EOS at t1, t2 is padding with garbage reward 5 and value 9 that must not leak:
    #   t1: next_mask = 0 -> delta = 2 - 1 = 1, A1 = 1
    #   t0: delta = 0 + .9 * 1 - 1 = -.1,     A0 = -.1 + .72 * 1 = .62;   returns [1.62, 2.0, 0]
    #   (reading the padded value: delta1 = 2 + .9 * 9 - 1 = 9.1)
    # row 2 is an empty response: all zero
    rewards = torch.tensor([[0.5, 0.0, 1.0], [0.0, 2.0, 5.0], [3.0, 3.0, 3.0]])
    values = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 9.0], [4.0, 4.0, 4.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    adv, ret = compute_gae(rewards, values, mask, gamma=0.9, lam=0.8)
    torch.testing.assert_close(adv, torch.tensor([[0.7672, -0.74, -2.0], [0.62, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[1.7672, 1.26, 1.0], [1.62, 2.0, 0.0], [0.0, 0.0, 0.0]]))
    # the rows are independent: the truncated row alone gives the same numbers
    adv0, _ = compute_gae(rewards[:1], values[:1], mask[:1], gamma=0.9, lam=0.8)
    torch.testing.assert_close(adv0, adv[:1])


# ------------------------------------------------------------------------------------------------ value loss

# (V, V_old, R) with eps_v = .2, every token moved past the clip *towards* its return, so the clipped error wins:
#   a: (1.5,  .5, 1.5): V_clip = .5 + .2 = .7,   err = 0,   err_clip = (.7 - 1.5)^2  = .64
#   b: (-.5, 1.0, -.5): V_clip = 1 - .2 = .8,    err = 0,   err_clip = (.8 + .5)^2   = 1.69
#   c: (.2,  -.3,  .3): V_clip = -.3 + .2 = -.1, err = .01, err_clip = (-.1 - .3)^2  = .16
# clipped loss = .5 * (.64 + 1.69 + .16) / 3 = .415, value_clip_fraction = 1
# plain loss   = .5 * (0 + 0 + .01) / 3 = .01 / 6
# (clamping V itself to ±.2 instead of V - V_old: V_clip(a) = .2 -> 1.69, so a wrong clip fails too)
V_NEW = torch.tensor([[1.5, -0.5, 0.2, 7.0]])
V_OLD = torch.tensor([[0.5, 1.0, -0.3, -7.0]])
V_RET = torch.tensor([[1.5, -0.5, 0.3, 0.0]])
V_MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the 4th token is padding with a huge error either way


def test_value_clip_decides_the_loss():
    loss, stats = clipped_value_loss(V_NEW, V_OLD, V_RET, V_MASK, clip_range_value=0.2)
    assert loss.item() == pytest.approx(0.415)
    assert stats["value_clip_fraction"].item() == 1.0
    plain, plain_stats = clipped_value_loss(V_NEW, V_OLD, V_RET, V_MASK, clip_range_value=None)
    assert plain.item() == pytest.approx(0.01 / 6)
    assert plain_stats["value_clip_fraction"].item() == 0.0


def test_value_clip_gradient_is_zero_where_the_clipped_error_wins():
    # the clipped value is a constant once V - V_old is past the clip, so those tokens pull nothing
    v = V_NEW.clone().requires_grad_(True)
    clipped_value_loss(v, V_OLD, V_RET, V_MASK, clip_range_value=0.2)[0].backward()
    assert v.grad.abs().sum().item() == 0.0
    # without the clip: d/dV .5 * mean((V - R)^2) = (V - R) / 3 on real tokens: [0, 0, -.1/3, 0]
    v = V_NEW.clone().requires_grad_(True)
    clipped_value_loss(v, V_OLD, V_RET, V_MASK, clip_range_value=None)[0].backward()
    torch.testing.assert_close(v.grad, torch.tensor([[0.0, 0.0, -0.1 / 3, 0.0]]))


def test_value_clip_fraction_counts_only_tokens_the_clip_decides():
    # a: clipped wins (.64, above); d: (1, .5, 0): V_clip = .7, err = 1 > err_clip = .49 -> the plain error
    # loss = .5 * (.64 + 1) / 2 = .41, fraction 1/2
    v, old, ret = torch.tensor([[1.5, 1.0]]), torch.tensor([[0.5, 0.5]]), torch.tensor([[1.5, 0.0]])
    loss, stats = clipped_value_loss(v, old, ret, torch.ones(1, 2), clip_range_value=0.2)
    assert loss.item() == pytest.approx(0.41)
    assert stats["value_clip_fraction"].item() == pytest.approx(0.5)


# ----------------------------------------------------------------------------------------------- policy loss


def test_ppo_clip_on_both_sides_of_the_ratio_and_both_signs_of_the_advantage():
    # eps = .2, token objective min(r A, clip(r, .8, 1.2) A):
    #   r 1.5, A +1: min(1.5, 1.2)   = 1.2   clipped  (above 1 + eps, good action: no more credit)
    #   r 1.5, A -1: min(-1.5, -1.2) = -1.5  unclipped (above 1 + eps, bad action: full blame)
    #   r .5,  A +1: min(.5, .8)     = .5    unclipped (below 1 - eps, good action: full blame)
    #   r .5,  A -1: min(-.5, -.8)   = -.8   clipped  (below 1 - eps, bad action: no more credit)
    #   r 1.1, A +2: inside the band = 2.2
    # token mean over the 5 real tokens of two rows of different lengths: loss = -(1.2 - 1.5 + .5 - .8 + 2.2)/5
    # = -.32 (a per-row mean first would give -((.2/3) + (1.4/2))/2 = -.3833); clip fraction 2/5
    # (clip(r) A without the min: -(1.2 - 1.2 + .8 - .8 + 2.2)/5 = -.44)
    ratio = torch.tensor([[1.5, 1.5, 0.5, 1.0], [0.5, 1.1, 1.0, 1.0]])
    adv = torch.tensor([[1.0, -1.0, 1.0, 50.0], [-1.0, 2.0, 50.0, 50.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    old = torch.full((2, 4), -1.0)
    new = (old + ratio.log()).requires_grad_(True)
    loss, stats = ppo_policy_loss(new, old, adv, mask, clip_range=0.2)
    assert loss.item() == pytest.approx(-0.32)
    assert stats["clip_fraction"].item() == pytest.approx(2 / 5)
    assert stats["ratio_mean"].item() == pytest.approx((1.5 + 1.5 + 0.5 + 0.5 + 1.1) / 5)
    # d loss / d logp = -A r / 5 where unclipped, 0 where clipped: [0, .3, -.1 | 0, -.44]
    loss.backward()
    torch.testing.assert_close(new.grad, torch.tensor([[0.0, 0.3, -0.1, 0.0], [0.0, -0.44, 0.0, 0.0]]))


def test_approx_kl_is_k3_of_old_to_new_over_real_tokens():
    # r = new/old = [2, .5] (3rd token padding): (r - 1) - ln r = [1 - ln 2, -.5 + ln 2] -> mean .5 / 2 = .25
    # a third real token with r = 1 adds 0 to the sum and 1 to the count: .5 / 3 (an unmasked mean: 4 tokens)
    old = torch.zeros(1, 4)
    new = torch.tensor([[math.log(2.0), math.log(0.5), 0.0, 9.0]])
    assert approx_kl(new, old, torch.tensor([[1.0, 1.0, 0.0, 0.0]])).item() == pytest.approx(0.25)
    assert approx_kl(new, old, torch.tensor([[1.0, 1.0, 1.0, 0.0]])).item() == pytest.approx(0.5 / 3)
    # r = e: (e - 1) - 1 = e - 2 = .718282 (k2 would give .5, k1 would give 1, and the ratio inverted, i.e.
    # KL(new || old), 1/e - 1 + 1 = .367879)
    assert approx_kl(torch.ones(1, 1), torch.zeros(1, 1), torch.ones(1, 1)).item() == pytest.approx(
        math.e - 2
    )


# -------------------------------------------------------------------------------------------- KL estimators


def test_kl_estimators_on_a_negative_log_ratio():
    # logp = ln .25, ref = ln .5: log_ratio x = -ln 2 (the policy made the token less likely than the reference)
    #   k1 = x = -.693147 (negative: unbiased, not a divergence per sample)
    #   k2 = x^2 / 2 = .240227
    #   k3 = e^{-x} - 1 + x = 2 - 1 - ln 2 = .306853 (with e^{+x}: .5 - 1 - ln 2 < 0)
    # at x = +ln 2: k1 = .693147, k2 = .240227 again, k3 = .5 - 1 + ln 2 = .193147 (k3 != k2 on both sides);
    # at x = 0 all three are 0
    ln2 = math.log(2)
    # three tokens: x = -ln 2, x = +ln 2 (logp = ln .5, ref = ln .25) and x = 0
    logp = torch.tensor([[math.log(0.25), math.log(0.5), -3.0]])
    ref = torch.tensor([[math.log(0.5), math.log(0.25), -3.0]])
    torch.testing.assert_close(kl_estimate(logp, ref, "k1"), torch.tensor([[-ln2, ln2, 0.0]]))
    torch.testing.assert_close(
        kl_estimate(logp, ref, "k2"), torch.tensor([[0.5 * ln2**2, 0.5 * ln2**2, 0.0]])
    )
    torch.testing.assert_close(kl_estimate(logp, ref, "k3"), torch.tensor([[1 - ln2, ln2 - 0.5, 0.0]]))


# ---------------------------------------------------------------------------------------- masked statistics

X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])  # zero padding: an unmasked mean is dragged towards 0
MX = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


def test_masked_mean_over_all_and_each_dim():
    # all: (1 + 2 + 3 + 4) / 4 = 2.5 (unmasked: 10 / 6 = 1.667)
    # dim=1 (per row): [6/3, 4/1] = [2, 4]; dim=0 (per column): [(1 + 4)/2, 2/1, 3/1] = [2.5, 2, 3]
    assert masked_mean(X, MX).item() == pytest.approx(2.5)
    torch.testing.assert_close(masked_mean(X, MX, dim=1), torch.tensor([2.0, 4.0]))
    torch.testing.assert_close(masked_mean(X, MX, dim=0), torch.tensor([2.5, 2.0, 3.0]))
    # an empty row has mean 0 (the denominator is clamped at 1), not NaN
    torch.testing.assert_close(
        masked_mean(X, torch.tensor([[1.0, 1.0, 1.0], [0, 0, 0]]), dim=1), torch.tensor([2.0, 0.0])
    )


def test_masked_var_bessel_and_single_entry():
    # deviations from 2.5: 2.25 + .25 + .25 + 2.25 = 5 -> biased 5/4 = 1.25, unbiased 5/3
    assert masked_var(X, MX, unbiased=False).item() == pytest.approx(1.25)
    assert masked_var(X, MX).item() == pytest.approx(5 / 3)
    # one real entry: variance 0 in both (no division by n - 1 = 0)
    one = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert masked_var(X, one).item() == 0.0 and masked_var(X, one, unbiased=False).item() == 0.0


def test_masked_whiten_with_and_without_shift_mean():
    # mean 2.5, std sqrt(5/3) = 1.290994 over the real entries
    #   shift_mean=True:  (x - 2.5) / 1.290994 = [-1.161895, -.387298, .387298 | 1.161895]
    #   shift_mean=False: the same + 2.5 (unit variance, mean kept) = [1.338105, 2.112702, 2.887298 | 3.661895]
    # padding stays 0 in both
    std = math.sqrt(5 / 3)
    centred = torch.tensor([[-1.5, -0.5, 0.5], [1.5, 0.0, 0.0]]) / std
    torch.testing.assert_close(masked_whiten(X, MX), centred)
    torch.testing.assert_close(masked_whiten(X, MX, shift_mean=False), (centred + 2.5) * MX)
    w = masked_whiten(X, MX)
    assert masked_mean(w, MX).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_var(w, MX).item() == pytest.approx(1.0, abs=1e-6)
    # constant entries: variance 0 -> eps keeps it finite (0 when centred, the mean itself otherwise)
    const = torch.full((1, 3), 3.0)
    torch.testing.assert_close(masked_whiten(const, torch.ones(1, 3)), torch.zeros(1, 3))
    torch.testing.assert_close(masked_whiten(const, torch.ones(1, 3), shift_mean=False), const)


def test_explained_variance_ignores_padding_and_can_be_negative():
    # returns [1, 2, 3] (var 1), values [1, 2, 4]: residual [0, 0, -1], mean -1/3,
    #   sum of squares 1/9 + 1/9 + 4/9 = 2/3, var 1/3 -> EV = 1 - 1/3 = 2/3
    # values [3, 2, 1]: residual [-2, 0, 2], var 8/2 = 4 -> EV = 1 - 4 = -3 (worse than predicting the mean)
    returns = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert explained_variance(torch.tensor([[1.0, 2.0, 4.0, -50.0]]), returns, mask) == pytest.approx(2 / 3)
    assert explained_variance(torch.tensor([[3.0, 2.0, 1.0, 0.0]]), returns, mask) == pytest.approx(-3.0)
    assert math.isnan(explained_variance(torch.zeros(1, 4), torch.full((1, 4), 2.0), mask))


def test_entropy_of_shifted_and_masked_logits():
    # logits are log-probabilities up to a constant: [c, c, c, c] -> ln 4 = 1.386294 whatever c
    # [0, ln 3]: p = [.25, .75] -> -(.25 ln .25 + .75 ln .75) = .562335
    logits = torch.tensor([[[5.0, 5.0, 5.0, 5.0], [0.0, math.log(3), -math.inf, -math.inf]]])
    expected = torch.tensor([[math.log(4), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))]])
    # a token with logit -inf (a top-k / top-p mask) has probability 0 and adds 0 (not 0 * -inf = NaN)
    torch.testing.assert_close(entropy_from_logits(logits), expected)
    # bf16 logits are computed in float32
    assert entropy_from_logits(logits.bfloat16()).dtype == torch.float32
    x = logits.clone().requires_grad_(True)
    entropy_from_logits(x).sum().backward()
    assert torch.isfinite(x.grad).all()


# ------------------------------------------------------------------------------------------- KL controllers


def test_adaptive_kl_controller_unclipped_error_and_horizon():
    # target 6, horizon 10000, n_steps 100 (n / horizon = .01):
    #   KL 6.6: e = 6.6/6 - 1 = +.1 (inside the clip) -> beta = .1 * (1 + .1 * .01) = .1001
    #   KL 5.4: e = -.1                              -> beta = .1001 * .999 = .1000
    #   KL 60:  e = 9 clipped to .2, n_steps 1000 (n / horizon = .1) -> beta *= 1.02
    #   KL 0:   e = -1 clipped to -.2                -> beta *= .98
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    ctl.update(6.6, 100)
    assert ctl.value == pytest.approx(0.1001, rel=1e-12)
    ctl.update(5.4, 100)
    assert ctl.value == pytest.approx(0.1001 * 0.999, rel=1e-12)
    ctl.update(60.0, 1000)
    assert ctl.value == pytest.approx(0.1001 * 0.999 * 1.02, rel=1e-12)
    ctl.update(0.0, 1000)
    assert ctl.value == pytest.approx(0.1001 * 0.999 * 1.02 * 0.98, rel=1e-12)


def test_kl_controller_state_and_factory():
    adaptive = make_kl_controller(0.2, target=3.0, horizon=500)
    assert isinstance(adaptive, AdaptiveKLController) and (adaptive.target, adaptive.horizon) == (3.0, 500)
    fixed = make_kl_controller(0.2, target=None, horizon=500)
    assert isinstance(fixed, FixedKLController)
    fixed.update(50.0, 1000)
    assert fixed.value == 0.2
    # the state carries the moved coefficient into a fresh controller (what a resume does)
    adaptive.update(30.0, 100)  # e = .2 -> .2 * (1 + .2 * 100/500) = .208
    assert adaptive.value == pytest.approx(0.208)
    fresh = make_kl_controller(0.2, target=3.0, horizon=500)
    fresh.load_state_dict(adaptive.state_dict())
    assert fresh.value == adaptive.value and fresh.state_dict() == adaptive.state_dict()
    restored = FixedKLController(0.0)
    restored.load_state_dict(fixed.state_dict())
    assert restored.value == 0.2


# -------------------------------------------------------------------------------------------- reward shaping


def test_kl_penalized_rewards_eos_and_truncated_rows_token_scores_and_k3():
    # row 0 ends with EOS at t1 (t2 padding, garbage log-probs); row 1 is truncated: real to the last position
    # log_ratio = [[.5, -1, (6)], [-.5, 0, 1]], beta = .2, scores [1, 3]
    #   k1 penalty -beta*kl: [[-.1, .2, 0], [.1, 0, -.2]]; score on the last real token: row 0 at t1, row 1 at t2
    #   -> [[-.1, 1.2, 0], [.1, 0, 2.8]]
    #   + token scores [[.01, .02, (.5)], [.03, .04, .05]] -> [[-.09, 1.22, 0], [.13, .04, 2.85]]
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0]])
    ref = torch.tensor([[-1.5, -1.0, -9.0], [-0.5, -1.0, -2.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    scores = torch.tensor([1.0, 3.0])
    assert last_token_index(mask).tolist() == [1, 2]
    rewards, kl = kl_penalized_rewards(scores, logp, ref, mask, kl_coef=0.2)
    torch.testing.assert_close(kl, torch.tensor([[0.5, -1.0, 0.0], [-0.5, 0.0, 1.0]]))
    torch.testing.assert_close(rewards, torch.tensor([[-0.1, 1.2, 0.0], [0.1, 0.0, 2.8]]))
    token_scores = torch.tensor([[0.01, 0.02, 0.5], [0.03, 0.04, 0.05]])
    rewards, _ = kl_penalized_rewards(scores, logp, ref, mask, kl_coef=0.2, token_scores=token_scores)
    torch.testing.assert_close(rewards, torch.tensor([[-0.09, 1.22, 0.0], [0.13, 0.04, 2.85]]))
    # k3 = e^{-x} - 1 + x: x=.5 -> .106531, x=-1 -> e - 2 = .718282, x=-.5 -> .148721, x=0 -> 0, x=1 -> 1/e = .367879
    rewards, kl = kl_penalized_rewards(scores, logp, ref, mask, kl_coef=0.2, estimator="k3")
    k3 = torch.tensor([[0.106531, 0.718282, 0.0], [0.148721, 0.0, 0.367879]])
    torch.testing.assert_close(kl, k3, atol=1e-6, rtol=0)
    torch.testing.assert_close(
        rewards, -0.2 * k3 + torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 3.0]]), atol=1e-6, rtol=0
    )
    # no reference (kl_coef 0 and no target): no penalty, the score alone on the last real token
    rewards, kl = kl_penalized_rewards(scores, logp, None, mask, kl_coef=0.2)
    torch.testing.assert_close(rewards, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 3.0]]))
    assert kl.abs().sum().item() == 0.0
