"""TRPO: conjugate gradient and the categorical KL against hand-worked numbers; the trust-region step on tiny
models (KL within δ, surrogate improved, a failed step leaves θ bit-identical, the critic fit leaves the LM alone);
then learning and exact resume on the smoke task."""

import json
import math

import pytest
import torch

from rl4text.algorithms.base import TrainBatch
from rl4text.algorithms.trpo import TRPO, TRPOConfig, categorical_kl, conjugate_gradient
from rl4text.config import load_config
from rl4text.policies.actor_critic import ActorCritic
from rl4text.registry import ALGORITHMS
from rl4text.rollout import collect_rollout
from rl4text.train import train
from tests.conftest import SAMPLES, tiny_model

SMOKE = "configs/smoke.yaml"
T5 = ["model.random_init={model_type: t5, d_model: 64, d_ff: 128, num_layers: 2, num_heads: 4, d_kv: 16}"]


# ---------------------------------------------------------------------------------------------- pure maths


def test_conjugate_gradient_hand_worked_3x3():
    # A is SPD (leading minors 4, 11, 18). Elimination: y = 1 - 4x; z = (3 - y) / 2 = 1 + 2x;
    # x + 3y + z = 2  ->  x + 3 - 12x + 1 + 2x = 2  ->  x = 2/9, y = 1/9, z = 13/9
    A = torch.tensor([[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]], dtype=torch.float64)
    b = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    calls = []

    def fvp(v):
        calls.append(v)
        return A @ v

    x = conjugate_gradient(fvp, b, iters=3, residual_tol=0.0)
    torch.testing.assert_close(x, torch.linalg.solve(A, b))
    torch.testing.assert_close(x, torch.tensor([2 / 9, 1 / 9, 13 / 9], dtype=torch.float64))
    assert len(calls) == 3
    # two iterations only reach the Krylov space span{b, Ab} = span{[1,2,3], [6,10,8]}, which misses x
    x2 = conjugate_gradient(lambda v: A @ v, b, iters=2, residual_tol=0.0)
    assert (x2 - x).abs().max() > 1e-3


def test_conjugate_gradient_converges_within_n_iterations():
    n = 6
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    A = q @ torch.diag(torch.arange(1.0, n + 1, dtype=torch.float64)) @ q.T  # SPD, eigenvalues 1..6
    b = torch.randn(n, generator=gen, dtype=torch.float64)
    calls = []

    def fvp(v):
        calls.append(v)
        return A @ v

    x = conjugate_gradient(fvp, b, iters=50, residual_tol=1e-20)
    torch.testing.assert_close(x, torch.linalg.solve(A, b))
    assert len(calls) <= n  # the residual vanishes after n steps, so the tolerance stops it
    # b an eigenvector (A = diag(1,2,3), b = 5 e2): one step, alpha = 25/50, x = 2.5 e2, residual exactly 0
    calls.clear()

    def diagonal(v):
        calls.append(v)
        return torch.tensor([1.0, 2.0, 3.0]) * v

    x = conjugate_gradient(diagonal, torch.tensor([0.0, 5.0, 0.0]), iters=10)
    torch.testing.assert_close(x, torch.tensor([0.0, 2.5, 0.0]))
    assert len(calls) == 1


def test_categorical_kl_hand_worked():
    # p = [.5, .5], q = [.25, .75]: KL(p||q) = .5 ln(.5/.25) + .5 ln(.5/.75) = .5 ln(4/3) = 0.143841
    old = torch.tensor([0.0, 0.0])
    new = torch.log(torch.tensor([0.25, 0.75]))
    assert categorical_kl(old, new).item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-6)
    assert categorical_kl(new, new).item() == pytest.approx(0.0, abs=1e-7)
    # a third token ruled out by an action mask (finite -1e9 logits) changes nothing and stays finite
    masked = categorical_kl(torch.tensor([0.0, 0.0, -1e9]), torch.cat([new, torch.tensor([-1e9])]))
    assert masked.item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-6)


def test_config_validation_and_registry():
    assert ALGORITHMS.get("trpo") is TRPO
    assert TRPOConfig().max_kl == 0.01
    for bad in ({"max_kl": 0.0}, {"line_search_shrink": 1.0}, {"cg_iters": 0}, {"value_minibatch_size": 0}):
        with pytest.raises(ValueError):
            TRPOConfig(**bad)
    with pytest.raises(ValueError, match="kl_estimator"):
        TRPOConfig(kl_estimator="k9")  # the shared checks still run


# ---------------------------------------------------------------------------------------------- one update


def make_trpo(kind, tokenizer, critic="shared", zero_advantages=False, weight_decay=0.0, **config):
    """A tiny policy, a TrainBatch from a real rollout with random advantages and returns, and TRPO on it."""
    model, seq2seq = tiny_model(kind, tokenizer)
    policy = ActorCritic(model, seq2seq, critic)
    rollout = collect_rollout(policy, None, tokenizer, SAMPLES, max_new_tokens=6, max_prompt_length=24)
    mask = rollout.response_mask
    gen = torch.Generator().manual_seed(1)
    advantages = torch.zeros_like(mask) if zero_advantages else torch.randn(mask.shape, generator=gen) * mask
    returns = torch.randn(mask.shape, generator=gen) * mask
    batch = TrainBatch(
        rollout.prompt_ids,
        rollout.prompt_mask,
        rollout.response_ids,
        mask,
        rollout.logprobs,
        rollout.values,
        advantages,
        returns,
    )
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=weight_decay)
    return policy, batch, TRPO(TRPOConfig(**config), policy, optimizer)


@torch.no_grad()
def logits_of(policy, batch):
    scored = policy.score(
        batch.prompt_ids,
        batch.prompt_mask,
        batch.response_ids,
        batch.response_mask.long(),
        with_values=False,
        action_mask=batch.action_mask,
        keep_logits=True,
    )
    return scored.logits, scored.logprobs


def state_of(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_step_stays_in_trust_region_and_improves_surrogate(kind, tokenizer):
    policy, batch, algo = make_trpo(kind, tokenizer, max_kl=1e-3)
    mask = batch.response_mask
    old_logits, _ = logits_of(policy, batch)
    stats = algo.update(batch)
    new_logits, new_logprobs = logits_of(policy, batch)
    # recompute the mean KL(old || new) over real tokens by hand, not with the module's helper
    p_old = torch.softmax(old_logits, -1)
    kl_tok = (p_old * (torch.log_softmax(old_logits, -1) - torch.log_softmax(new_logits, -1))).sum(-1)
    kl = ((kl_tok * mask).sum() / mask.sum()).item()
    assert stats["trpo/accepted"] == 1.0
    assert 0.1 * 1e-3 < kl <= 1e-3 + 1e-7  # a real step, inside the trust region
    assert stats["trpo/kl"] == pytest.approx(kl, rel=1e-4)
    # the surrogate mean(exp(logp - logp_old) A) improved; at θ_old the ratio is 1, so it started at mean(A)
    before = ((batch.advantages * mask).sum() / mask.sum()).item()
    after = (
        (torch.exp(new_logprobs - batch.old_logprobs) * batch.advantages * mask).sum() / mask.sum()
    ).item()
    assert after > before
    assert stats["trpo/surrogate_improvement"] == pytest.approx(after - before, rel=1e-3, abs=1e-6)
    assert stats["trpo/step_size"] > 0 and stats["trpo/expected_improvement"] > 0
    assert all(math.isfinite(v) for v in stats.values())


def test_action_mask_is_respected(tokenizer):
    policy, batch, algo = make_trpo("causal", tokenizer, max_kl=1e-3)
    # allow the sampled token and a random half of the vocabulary at each step
    gen = torch.Generator().manual_seed(2)
    allowed = torch.rand(*batch.response_ids.shape, len(tokenizer), generator=gen) < 0.5
    allowed.scatter_(-1, batch.response_ids[..., None], True)
    batch.action_mask = allowed
    old_logits, batch.old_logprobs = logits_of(policy, batch)  # behaviour log-probs of the masked policy
    stats = algo.update(batch)
    new_logits, _ = logits_of(policy, batch)
    mask = batch.response_mask
    kl = ((categorical_kl(old_logits, new_logits) * mask).sum() / mask.sum()).item()
    assert stats["trpo/accepted"] == 1.0 and stats["trpo/kl"] == pytest.approx(kl, rel=1e-4)
    assert kl <= 1e-3 + 1e-7
    # the ruled-out tokens' probability under the renormalised distribution stays exactly 0
    assert torch.softmax(new_logits, -1)[~allowed].max() == 0


def test_step_without_improvement_is_rejected(kind, tokenizer):
    # zero advantages: the surrogate's gradient is 0, no step can improve it
    policy, batch, algo = make_trpo(kind, tokenizer, zero_advantages=True)
    before = state_of(policy.model)
    stats = algo.update(batch)
    assert stats["trpo/accepted"] == 0.0 and stats["trpo/step_size"] == 0.0 and stats["trpo/kl"] == 0.0
    after = state_of(policy.model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_failed_line_search_restores_parameters_exactly(tokenizer):
    # every step the line search tries moves θ; pretend each breaks the trust region: θ must come back bit for bit
    policy, batch, algo = make_trpo("causal", tokenizer, line_search_max_steps=3)
    before = state_of(policy.model)
    real_evaluate, tried = algo._evaluate, []

    def violating(b, old_logits):
        tried.append(any(not torch.equal(before[k], v) for k, v in policy.model.state_dict().items()))
        surr, _kl, scored = real_evaluate(b, old_logits)
        return surr, float("inf"), scored

    algo._evaluate = violating
    stats = algo.update(batch)
    assert tried == [True, True, True]
    assert stats["trpo/accepted"] == 0.0 and stats["trpo/line_search_steps"] == 3.0
    after = state_of(policy.model)
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("critic", ["shared", "separate"])
def test_value_fit_leaves_the_language_model_alone(kind, tokenizer, critic):
    # the policy step is rejected (zero advantages), so only the critic fit runs; weight decay must not touch
    # the LM either (AdamW skips parameters whose grad is None)
    policy, batch, algo = make_trpo(
        kind, tokenizer, critic=critic, zero_advantages=True, weight_decay=0.1, value_minibatch_size=3
    )
    lm_before, head_before = state_of(policy.model), policy.value_head.weight.clone()
    critic_before = None if policy.critic_model is None else state_of(policy.critic_model)
    stats = algo.update(batch)
    assert stats["trpo/value_steps"] == 5 * 2  # 5 epochs of minibatches of 3 over 4 episodes
    lm_after = state_of(policy.model)
    assert all(torch.equal(lm_before[k], lm_after[k]) for k in lm_before)
    assert not torch.equal(policy.value_head.weight, head_before)
    if critic_before is not None:
        critic_after = state_of(policy.critic_model)
        assert any(not torch.equal(critic_before[k], critic_after[k]) for k in critic_before)


# ---------------------------------------------------------------------------------------------- training


def read_rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "rollout/reward_mean" in r]


def without_time(row):
    return {k: v for k, v in row.items() if not k.startswith("time/")}


# The paper's δ = 0.01 with 10 CG iterations learns this task too slowly for a test (reward 0.10 -> 0.18 in 20
# iterations at δ = 0.05): a 10-step CG solve of the natural gradient on 32 episodes fits sampling noise. A wider
# region with 3 CG iterations (truncated CG keeps the step nearer the plain gradient) learns in 20.
TRPO_SMOKE = ["algorithm.name=trpo", "algorithm.max_kl=0.1", "algorithm.cg_iters=3"]


@pytest.mark.parametrize("model_overrides", [[], T5], ids=["causal", "seq2seq"])
def test_trpo_raises_reward(tmp_path, model_overrides):
    overrides = [
        *TRPO_SMOKE,
        "train.iterations=20",
        "eval.every=0",
        "eval.at_start=false",
        "train.save_final_model=false",
        *model_overrides,
    ]
    train(load_config(SMOKE, overrides), tmp_path / "run")
    rows = read_rows(tmp_path / "run")
    rewards = [r["rollout/reward_mean"] for r in rows]
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last > first + 0.3, rewards
    assert all(r["trpo/kl"] <= 0.1 + 1e-6 for r in rows)
    for key in (
        "loss/value",
        "loss/entropy",
        "policy/approx_kl",
        "policy/explained_variance",
        "trpo/accepted",
    ):
        assert all(key in r for r in rows)


def test_resume_continues_exactly(tmp_path):
    common = [*TRPO_SMOKE, "train.save_final_model=false", "eval.every=0"]
    train(load_config(SMOKE, ["train.iterations=4", "train.save_every=2", *common]), tmp_path / "straight")
    train(load_config(SMOKE, ["train.iterations=2", *common]), tmp_path / "resumed")
    train(load_config(SMOKE, ["train.iterations=4", *common]), tmp_path / "resumed", resume=True)
    a = [without_time(r) for r in read_rows(tmp_path / "straight")]
    b = [without_time(r) for r in read_rows(tmp_path / "resumed")]
    assert [r["iteration"] for r in b] == [1, 2, 3, 4]
    assert a == b
    assert json.loads((tmp_path / "straight" / "eval.json").read_text()) == json.loads(
        (tmp_path / "resumed" / "eval.json").read_text()
    )
