"""The maths, checked against numbers worked out by hand (in the comments)."""

import math

import pytest
import torch

from rl4text.core import (
    AdaptiveKLController,
    FixedKLController,
    clipped_value_loss,
    compute_gae,
    entropy_from_logits,
    explained_variance,
    kl_estimate,
    masked_mean,
    masked_var,
    masked_whiten,
    ppo_policy_loss,
)
from rl4text.core.shaping import kl_penalized_rewards, last_token_index


def test_gae_hand_worked():
    # row 0: gamma=1, lam=0.5, V=[.5,.6,.7], r=[0,0,1], all real
    #   t2: delta = 1 - .7 = .3            A2 = .3
    #   t1: delta = 0 + .7 - .6 = .1       A1 = .1 + .5*.3 = .25
    #   t0: delta = 0 + .6 - .5 = .1       A0 = .1 + .5*.25 = .225
    # row 1: mask [1,1,0]; the masked step's reward 5 and value 9 must be ignored
    #   t1: delta = 2 + 0 - 1 = 1          A1 = 1 ;  t0: delta = 0 + 1 - 1 = 0, A0 = .5*1 = .5
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 5.0]])
    values = torch.tensor([[0.5, 0.6, 0.7], [1.0, 1.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, ret = compute_gae(rewards, values, mask, gamma=1.0, lam=0.5)
    torch.testing.assert_close(adv, torch.tensor([[0.225, 0.25, 0.3], [0.5, 1.0, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[0.725, 0.85, 1.0], [1.5, 2.0, 0.0]]))


def test_gae_discount():
    # gamma=.9, lam=1, V=0, r=[1,1]: A1 = 1, A0 = 1 + .9*1 = 1.9 (discounted return)
    adv, ret = compute_gae(
        torch.tensor([[1.0, 1.0]]), torch.zeros(1, 2), torch.ones(1, 2), gamma=0.9, lam=1.0
    )
    torch.testing.assert_close(adv, torch.tensor([[1.9, 1.0]]))
    torch.testing.assert_close(ret, adv)


def test_masked_stats_and_whitening():
    # real entries 1,2,3,4: mean 2.5, unbiased var (2.25+.25+.25+2.25)/3 = 5/3; the 99s are padding
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 99.0, 99.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert masked_mean(x, mask).item() == pytest.approx(2.5)
    assert masked_var(x, mask).item() == pytest.approx(5 / 3)
    assert masked_var(x, mask, unbiased=False).item() == pytest.approx(1.25)
    w = masked_whiten(x, mask)
    std = math.sqrt(5 / 3)
    torch.testing.assert_close(w, torch.tensor([[-1.5 / std, -0.5 / std, 0.5 / std], [1.5 / std, 0.0, 0.0]]))
    torch.testing.assert_close(masked_mean(x, mask, dim=1), torch.tensor([2.0, 4.0]))


def test_explained_variance():
    returns = torch.tensor([[1.0, 2.0, 3.0]])
    mask = torch.ones(1, 3)
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    # constant prediction at the mean: residual variance == return variance -> 0
    assert explained_variance(torch.full((1, 3), 2.0), returns, mask) == pytest.approx(0.0)


def test_kl_estimators():
    # p = .5, q = .25: log ratio = ln 2
    logp, logq = torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]])
    ln2 = math.log(2)
    assert kl_estimate(logp, logq, "k1").item() == pytest.approx(ln2)
    assert kl_estimate(logp, logq, "k2").item() == pytest.approx(0.5 * ln2**2)
    assert kl_estimate(logp, logq, "k3").item() == pytest.approx(0.5 - 1 + ln2)  # q/p - 1 - ln(q/p)
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_estimate(logp, logq, "k9")


def test_kl_estimators_are_unbiased_or_not_as_documented():
    # sample x ~ p and compare the estimators' means with the exact KL(p || q)
    torch.manual_seed(0)
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.3, 0.5])
    exact = float((p * (p / q).log()).sum())
    x = torch.multinomial(p, 200_000, replacement=True)
    logp, logq = p.log()[x], q.log()[x]
    assert kl_estimate(logp, logq, "k1").mean().item() == pytest.approx(exact, abs=5e-3)
    assert kl_estimate(logp, logq, "k3").mean().item() == pytest.approx(exact, abs=5e-3)


def test_ppo_policy_loss_hand_worked():
    # ratios 1.5, .5, .5 with advantages +1, +1, -2 and eps = .2:
    #   min(1.5*1, 1.2*1) = 1.2 (clipped); min(.5, .8) = .5; min(-1, -1.6) = -1.6 (clipped)
    #   loss = -(1.2 + .5 - 1.6)/3 = -0.1/3; clip fraction 2/3
    old = torch.zeros(1, 4)
    new = torch.tensor([[math.log(1.5), math.log(0.5), math.log(0.5), 5.0]])  # 4th token is padding
    adv = torch.tensor([[1.0, 1.0, -2.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    loss, stats = ppo_policy_loss(new, old, adv, mask, clip_range=0.2)
    assert loss.item() == pytest.approx(-0.1 / 3, abs=1e-6)
    assert stats["clip_fraction"].item() == pytest.approx(2 / 3)
    # approx KL (k3 of old||new): (r - 1) - ln r averaged: (.5 - ln1.5 + 2*(-.5 - ln .5))/3
    expected = ((0.5 - math.log(1.5)) + 2 * (-0.5 - math.log(0.5))) / 3
    assert stats["approx_kl"].item() == pytest.approx(expected, abs=1e-6)


def test_ppo_gradient_is_zero_where_clipped():
    old = torch.zeros(1, 1)
    new = torch.tensor([[math.log(1.5)]], requires_grad=True)
    loss, _ = ppo_policy_loss(new, old, torch.ones(1, 1), torch.ones(1, 1), clip_range=0.2)
    loss.backward()
    assert new.grad.item() == 0.0


def test_clipped_value_loss_hand_worked():
    # (V, V_old, R): (1, .5, 0): V_clip = .7, max(1, .49) = 1
    #                (0, .5, 1): V_clip = .3, max(1, .49) = 1
    #                (.6, .5, 1): inside the clip, .16
    # loss = .5 * (1 + 1 + .16)/3 = .36
    v = torch.tensor([[1.0, 0.0, 0.6]])
    old = torch.tensor([[0.5, 0.5, 0.5]])
    ret = torch.tensor([[0.0, 1.0, 1.0]])
    loss, _ = clipped_value_loss(v, old, ret, torch.ones(1, 3), clip_range_value=0.2)
    assert loss.item() == pytest.approx(0.36)
    plain, _ = clipped_value_loss(v, old, ret, torch.ones(1, 3), clip_range_value=None)
    assert plain.item() == pytest.approx(0.5 * (1 + 1 + 0.16) / 3)


def test_entropy_from_logits():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25]]]))
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert entropy_from_logits(logits).item() == pytest.approx(expected)


def test_kl_controllers():
    fixed = FixedKLController(0.1)
    fixed.update(100.0, 10)
    assert fixed.value == 0.1
    # KL twice the target: error clipped to +.2; beta *= 1 + .2 * 100 / 10000
    adaptive = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    adaptive.update(12.0, 100)
    assert adaptive.value == pytest.approx(0.1 * 1.002)
    # KL at half the target: error -.5 clipped to -.2
    adaptive.update(3.0, 100)
    assert adaptive.value == pytest.approx(0.1 * 1.002 * 0.998)


def test_kl_penalized_rewards_hand_worked():
    # k1 = logp - ref = [1, 0, (masked)]; beta=.1 -> [-.1, 0]; the score 2 sits on the last real token (index 1)
    scores = torch.tensor([2.0])
    logp = torch.tensor([[-1.0, -1.0, -1.0]])
    ref = torch.tensor([[-2.0, -1.0, -0.5]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    rewards, kl = kl_penalized_rewards(scores, logp, ref, mask, kl_coef=0.1)
    torch.testing.assert_close(rewards, torch.tensor([[-0.1, 2.0, 0.0]]))
    torch.testing.assert_close(kl, torch.tensor([[1.0, 0.0, 0.0]]))
    assert last_token_index(torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])).tolist() == [2, 0]
