"""A2C and RLOO: their maths by hand, and each raises the smoke reward on causal and seq2seq models.
(PPO: tests/test_core.py + tests/test_train.py; TRPO and NLPO: their own test files.)"""

import json

import pytest
import torch

from rl4text.algorithms.a2c import policy_gradient_loss
from rl4text.algorithms.rloo import RLOO, RLOOConfig, leave_one_out_advantages
from rl4text.config import ConfigError, load_config
from rl4text.policies import ActorCritic
from rl4text.rollout import collect_rollout
from rl4text.train import train

from .conftest import SAMPLES, tiny_model

SMOKE = "configs/smoke.yaml"
T5 = "model.random_init={model_type: t5, d_model: 64, d_ff: 128, num_layers: 2, num_heads: 4, d_kv: 16}"


def test_policy_gradient_loss_hand_worked():
    # -mean(A * logp) over real tokens: -(1*-1 + -1*-2)/2 = -0.5; the padded third token is ignored
    logp = torch.tensor([[-1.0, -2.0, -9.0]])
    adv = torch.tensor([[1.0, -1.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert policy_gradient_loss(logp, adv, mask).item() == pytest.approx(-0.5)


def test_leave_one_out_hand_worked():
    # R = [1, 2, 3, 6], k = 4: A_0 = 1 - (2+3+6)/3 = -8/3, A_1 = 2 - 10/3 = -4/3, A_2 = 3 - 9/3 = 0, A_3 = 6 - 2 = 4
    adv = leave_one_out_advantages(torch.tensor([1.0, 2.0, 3.0, 6.0]), k=4)
    torch.testing.assert_close(adv, torch.tensor([-8 / 3, -4 / 3, 0.0, 4.0]))
    # two groups of k = 2: [1, 3] -> [-2, 2]; [5, 5] -> [0, 0]
    adv2 = leave_one_out_advantages(torch.tensor([1.0, 3.0, 5.0, 5.0]), k=2)
    torch.testing.assert_close(adv2, torch.tensor([-2.0, 2.0, 0.0, 0.0]))


def test_leave_one_out_baseline_excludes_the_sample_itself():
    returns = torch.tensor([1.0, 2.0, 3.0, 6.0])
    bumped = returns.clone()
    bumped[0] += 3.0
    delta = leave_one_out_advantages(bumped, 4) - leave_one_out_advantages(returns, 4)
    # the sample's own advantage moves by the full 3 (its baseline does not see it); the others' by -3/(k-1)
    torch.testing.assert_close(delta, torch.tensor([3.0, -1.0, -1.0, -1.0]))


def test_rloo_prepare_uses_sequence_returns_with_kl(kind, tokenizer):
    model, seq2seq = tiny_model(kind, tokenizer)
    policy = ActorCritic(model, seq2seq)
    algo = RLOO(RLOOConfig(k=2), policy, torch.optim.AdamW(policy.parameters(), lr=1e-3))
    rollout = collect_rollout(
        policy, None, tokenizer, SAMPLES, max_new_tokens=5, max_prompt_length=24, with_values=False
    )
    assert rollout.values is None
    token_rewards = torch.zeros_like(rollout.logprobs)
    token_rewards[:, 0] = torch.tensor([1.0, 3.0, 0.0, 2.0])  # the episodes' returns
    batch = algo.prepare(rollout, token_rewards)
    expected = torch.tensor([-2.0, 2.0, -2.0, 2.0])
    torch.testing.assert_close(batch.advantages[:, 0], expected)
    torch.testing.assert_close(batch.advantages, expected[:, None] * rollout.response_mask)
    stats = algo.update(batch)
    assert {"loss/policy", "loss/entropy", "policy/approx_kl", "policy/grad_norm"} <= set(stats)


def test_rloo_needs_two_samples_and_a_divisible_batch(tmp_path):
    with pytest.raises(ConfigError, match="k >= 2"):
        load_config(SMOKE, ["algorithm.name=rloo", "algorithm.k=1"])
    cfg = load_config(SMOKE, ["algorithm.name=rloo", "algorithm.k=3", "train.iterations=1"])
    with pytest.raises(ConfigError, match="multiple"):
        train(cfg, tmp_path / "run")


def rewards_of(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["rollout/reward_mean"] for r in rows if "rollout/reward_mean" in r]


LEARNING = {
    "a2c": ["train.iterations=30"],
    "rloo": ["train.iterations=24", "algorithm.k=4"],
}


@pytest.mark.parametrize("algorithm", sorted(LEARNING))
@pytest.mark.parametrize("model", ["causal", "seq2seq"])
def test_learns_smoke_task(tmp_path, algorithm, model):
    overrides = [
        f"algorithm.name={algorithm}",
        "eval.every=0",
        "train.save_final_model=false",
        *LEARNING[algorithm],
    ]
    if model == "seq2seq":
        overrides.append(T5)
    train(load_config(SMOKE, overrides), tmp_path / "run")
    rewards = rewards_of(tmp_path / "run")
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last > first + 0.3, rewards
