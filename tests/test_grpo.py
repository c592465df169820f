"""GRPO / Dr. GRPO: advantage, loss and aggregation maths by hand (every option changes the number), the config
rules, ``prepare`` with the KL in the loss or in the reward, and learning on the smoke task (causal and seq2seq)."""

import json
import math

import pytest
import torch

from rl4text.algorithms.grpo import GRPO, GRPOConfig
from rl4text.config import ConfigError, load_config
from rl4text.core.grpo import aggregate_token_losses, group_advantages, grpo_token_losses
from rl4text.core.shaping import kl_penalized_rewards
from rl4text.policies import ActorCritic
from rl4text.policies.actor_critic import frozen_copy
from rl4text.registry import ALGORITHMS
from rl4text.rollout import collect_rollout
from rl4text.train import train

from .conftest import SAMPLES, tiny_model

SMOKE = "configs/smoke.yaml"
T5 = "model.random_init={model_type: t5, d_model: 64, d_ff: 128, num_layers: 2, num_heads: 4, d_kv: 16}"


# ---------------------------------------------------------------------------------------------- advantages


def test_group_advantages_with_std_scaling_by_hand():
    # group 1: R = [1, 2, 3, 6], mean 3, centred [-2, -1, 0, 3], sample std sqrt((4 + 1 + 0 + 9) / 3) = sqrt(14/3)
    # (the population std sqrt(14/4) would give other numbers); group 2: all 5 -> zero advantages, zero std
    adv, zero = group_advantages(torch.tensor([1.0, 2.0, 3.0, 6.0, 5.0, 5.0, 5.0, 5.0]), k=4, eps=1e-4)
    std = math.sqrt(14 / 3)
    expected = [-2 / (std + 1e-4), -1 / (std + 1e-4), 0.0, 3 / (std + 1e-4), 0.0, 0.0, 0.0, 0.0]
    torch.testing.assert_close(adv, torch.tensor(expected))
    assert zero.tolist() == [False, True]


def test_group_advantages_eps_and_dr_grpo_no_scaling():
    # k = 2, R = [0, 1]: centred [-0.5, 0.5], sample std sqrt(0.5) = 0.70711; eps = 0.1 -> ±0.5 / 0.80711
    returns = torch.tensor([0.0, 1.0, 4.0, 2.0])
    adv, zero = group_advantages(returns, k=2, eps=0.1)
    a = 0.5 / (math.sqrt(0.5) + 0.1)
    b = 1.0 / (math.sqrt(2.0) + 0.1)  # [4, 2]: centred [1, -1], std sqrt(2)
    torch.testing.assert_close(adv, torch.tensor([-a, a, b, -b]))
    assert zero.tolist() == [False, False]
    # Dr. GRPO: centred only, the std does not rescale (a group whose returns differ by 2 moves twice as far)
    adv, _ = group_advantages(returns, k=2, scale_by_std=False)
    torch.testing.assert_close(adv, torch.tensor([-0.5, 0.5, 1.0, -1.0]))


def test_group_advantages_ties_and_zero_std_groups():
    # a tie inside a group still gets its own centred value: [2, 2, 5] -> mean 3, centred [-1, -1, 2], std sqrt(3)
    # the second group is all 7: zero std, zero advantages (not NaN, not ±1/eps)
    adv, zero = group_advantages(torch.tensor([2.0, 2.0, 5.0, 7.0, 7.0, 7.0]), k=3, eps=0.0)
    s = math.sqrt(3.0)
    torch.testing.assert_close(adv, torch.tensor([-1 / s, -1 / s, 2 / s, 0.0, 0.0, 0.0]))
    assert zero.tolist() == [False, True]
    with pytest.raises(ValueError, match="groups of k=4"):
        group_advantages(torch.zeros(6), k=4)


# ---------------------------------------------------------------------------------------------- loss


def _loss_case():
    # ratios r = [1.5, 0.5, 0.5, 1.5, 1.0] with advantages [1, -1, 1, -2, 2], clip 0.2:
    #   A>0, r>1.2: max(-1.5, -1.2) = -1.2 (clipped, high)   A<0, r<0.8: max(0.5, 0.8) = 0.8 (clipped, low)
    #   A>0, r<0.8: max(-0.5, -0.8) = -0.5 (unclipped)       A<0, r>1.2: max(3.0, 2.4) = 3.0 (unclipped)
    #   r = 1: -2.0
    logp = torch.full((1, 5), -1.0)
    ratio = torch.tensor([[1.5, 0.5, 0.5, 1.5, 1.0]])
    old = logp - ratio.log()
    adv = torch.tensor([[1.0, -1.0, 1.0, -2.0, 2.0]])
    return logp, old, adv


def test_grpo_token_losses_clip_on_both_sides_by_hand():
    logp, old, adv = _loss_case()
    losses, parts = grpo_token_losses(logp, old, adv, clip_range=0.2)
    torch.testing.assert_close(losses, torch.tensor([[-1.2, 0.8, -0.5, 3.0, -2.0]]))
    assert parts["clipped_high"].tolist() == [[True, False, False, False, False]]
    assert parts["clipped_low"].tolist() == [[False, True, False, False, False]]
    assert parts["kl"].abs().sum() == 0  # no reference: no KL term


def test_grpo_token_losses_k3_kl_term_by_hand():
    # KL3 = exp(ref - logp) - (ref - logp) - 1 with logp = -1:
    #   ref -2: e^-1 + 1 - 1 = 0.367879; ref -0.5: e^0.5 - 0.5 - 1 = 0.148721; ref -1: 0; ref -3: e^-2 + 2 - 1
    # (k1 would give logp - ref = [1, -0.5, 0, 0, 2]; the reversed ratio exp(logp - ref) - ... = [0.718, ...])
    logp, old, adv = _loss_case()
    ref = torch.tensor([[-2.0, -0.5, -1.0, -1.0, -3.0]])
    kl = torch.tensor([[math.exp(-1), math.exp(0.5) - 1.5, 0.0, 0.0, math.exp(-2) + 1.0]])
    losses, parts = grpo_token_losses(logp, old, adv, clip_range=0.2, ref_logprobs=ref, beta=0.1)
    torch.testing.assert_close(parts["kl"], kl)
    torch.testing.assert_close(losses, torch.tensor([[-1.2, 0.8, -0.5, 3.0, -2.0]]) + 0.1 * kl)
    # the KL term's gradient pulls logp towards ref: d/dlogp [beta * KL3] = beta * (1 - exp(ref - logp))
    logp = logp.clone().requires_grad_(True)
    grpo_token_losses(logp, logp.detach(), torch.zeros_like(adv), clip_range=0.2, ref_logprobs=ref, beta=0.1)[
        0
    ].sum().backward()
    torch.testing.assert_close(logp.grad, 0.1 * (1 - torch.exp(ref + 1.0)))


def test_loss_aggregations_differ_on_unequal_lengths():
    # row 0: 3 tokens [1, 2, 3]; row 1: 1 token [4] (the 9s are padding and must not count)
    losses = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    # sequence_mean: (6/3 + 4/1) / 2 = 3; token_mean: 10 / 4 = 2.5; constant L = 5: 10 / (2 * 5) = 1
    assert aggregate_token_losses(losses, mask, "sequence_mean").item() == pytest.approx(3.0)
    assert aggregate_token_losses(losses, mask, "token_mean").item() == pytest.approx(2.5)
    assert aggregate_token_losses(losses, mask, "constant", constant=5).item() == pytest.approx(1.0)
    # an empty response counts as 0 in the sequence mean and adds a sequence to the constant's denominator
    losses3 = torch.cat([losses, torch.full((1, 3), 7.0)])
    mask3 = torch.cat([mask, torch.zeros(1, 3)])
    assert aggregate_token_losses(losses3, mask3, "sequence_mean").item() == pytest.approx(2.0)
    assert aggregate_token_losses(losses3, mask3, "token_mean").item() == pytest.approx(2.5)
    assert aggregate_token_losses(losses3, mask3, "constant", constant=5).item() == pytest.approx(10 / 15)
    with pytest.raises(ValueError, match="positive normaliser"):
        aggregate_token_losses(losses, mask, "constant")
    with pytest.raises(ValueError, match="valid: sequence_mean"):
        aggregate_token_losses(losses, mask, "mean")


# ---------------------------------------------------------------------------------------------- config


def test_registered_with_paper_defaults():
    assert ALGORITHMS.get("grpo") is GRPO
    cfg = GRPOConfig()
    assert (cfg.kl_coef, cfg.clip_range, cfg.kl_penalty, cfg.loss_aggregation) == (
        0.04,
        0.2,
        "loss",
        "sequence_mean",
    )


def test_config_rules_checked_when_the_config_loads():
    with pytest.raises(ConfigError, match=r"rollout.batch_size=30 must be a multiple of algorithm.k=4"):
        load_config(SMOKE, ["algorithm.name=grpo", "rollout.batch_size=30"])
    with pytest.raises(ConfigError, match="k >= 2"):
        load_config(SMOKE, ["algorithm.name=grpo", "algorithm.k=1"])
    with pytest.raises(ConfigError, match="kl_penalty=reward"):
        load_config(SMOKE, ["algorithm.name=grpo", "algorithm.kl_target=1.0"])
    load_config(SMOKE, ["algorithm.name=grpo", "algorithm.kl_target=1.0", "algorithm.kl_penalty=reward"])
    with pytest.raises(ConfigError, match="loss_aggregation"):
        load_config(SMOKE, ["algorithm.name=grpo", "algorithm.loss_aggregation=mean"])
    # Dr. GRPO's constant defaults to the generation budget
    cfg = load_config(SMOKE, ["algorithm.name=grpo", "algorithm.loss_aggregation=constant"])
    assert cfg.algorithm.params.constant_normalizer == cfg.rollout.max_new_tokens == 12
    cfg = load_config(
        SMOKE,
        ["algorithm.name=grpo", "algorithm.loss_aggregation=constant", "algorithm.constant_normalizer=64"],
    )
    assert cfg.algorithm.params.constant_normalizer == 64


# ---------------------------------------------------------------------------------------------- prepare/update


@pytest.mark.parametrize("kl_penalty", ["loss", "reward"])
def test_prepare_normalises_task_returns_and_places_the_kl(kind, tokenizer, kl_penalty):
    model, seq2seq = tiny_model(kind, tokenizer)
    policy = ActorCritic(model, seq2seq)
    torch.manual_seed(1)
    for p in policy.model.parameters():  # move the policy away from the reference so the KL is not 0
        p.data.add_(0.05 * torch.randn_like(p))
    reference = frozen_copy(tiny_model(kind, tokenizer)[0])
    cfg = GRPOConfig(k=2, kl_coef=0.5, kl_penalty=kl_penalty, minibatch_size=2, n_epochs=2)
    algo = GRPO(cfg, policy, torch.optim.AdamW(policy.parameters(), lr=1e-2))
    rollout = collect_rollout(
        policy, reference, tokenizer, SAMPLES, max_new_tokens=5, max_prompt_length=24, with_values=False
    )
    scores = torch.tensor([1.0, 3.0, 0.0, 2.0])
    # the loop's rewards: k1 penalty on every token, score on the last one
    token_rewards, kl = kl_penalized_rewards(
        scores, rollout.logprobs, rollout.ref_logprobs, rollout.response_mask, 0.5, "k1"
    )
    assert kl.abs().sum() > 0
    batch = algo.prepare(rollout, token_rewards)
    returns = scores if kl_penalty == "loss" else scores - 0.5 * kl.sum(-1)
    expected, _ = group_advantages(returns, 2)
    torch.testing.assert_close(batch.advantages[:, 0], expected)
    torch.testing.assert_close(batch.advantages, expected[:, None] * rollout.response_mask)
    assert (batch.ref_logprobs is not None) == (kl_penalty == "loss")
    before = [p.detach().clone() for p in policy.model.parameters()]
    stats = algo.update(batch)
    assert stats["grpo/gradient_steps"] == 4.0  # 2 epochs x 2 minibatches of 2
    assert stats["grpo/zero_std_fraction"] == 0.0
    assert (stats["loss/kl"] > 0) == (kl_penalty == "loss")
    assert 0.0 <= stats["grpo/clip_fraction"] <= 1.0
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.model.parameters()))


# ---------------------------------------------------------------------------------------------- learning


def rewards_of(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["rollout/reward_mean"] for r in rows if "rollout/reward_mean" in r], rows


@pytest.mark.parametrize(
    "variant",
    [[], ["algorithm.scale_rewards=false", "algorithm.loss_aggregation=constant"]],
    ids=["grpo", "dr"],
)
@pytest.mark.parametrize("model", ["causal", "seq2seq"])
def test_learns_smoke_task(tmp_path, model, variant):
    overrides = ["algorithm.name=grpo", "eval.every=0", "train.iterations=20", *variant]
    if model == "seq2seq":
        overrides.append(T5)
    cfg = load_config(SMOKE, overrides)
    train(cfg, tmp_path / "run")
    rewards, rows = rewards_of(tmp_path / "run")
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last > first + 0.3, rewards
    assert all(
        "grpo/clip_fraction" in r and "grpo/zero_std_fraction" in r
        for r in rows
        if "rollout/reward_mean" in r
    )
    # the saved model differs from a fresh one of the same seed (parameters changed)
    from safetensors.torch import load_file

    trained = load_file(tmp_path / "run" / "model" / "model.safetensors")
    fresh = tiny_model_state(cfg)
    assert any(not torch.equal(trained[k], fresh[k]) for k in fresh if k in trained)


def tiny_model_state(cfg):
    from rl4text.models import load_model, load_tokenizer
    from rl4text.train import seed_everything

    seed_everything(cfg.train.seed)
    model, _ = load_model(cfg.model, load_tokenizer(cfg.model))
    return {k: v.detach() for k, v in model.state_dict().items()}
