"""Memory and precision knobs of issue 13: gradient checkpointing gives the same loss and gradients (causal and
seq2seq), bfloat16 autocast runs generation, scoring, reference and update under one autocast (PPO's first ratio
is 1) with fp32 weights and optimiser state, and wrapping a model with PEFT prints no deprecation warning."""

import json
import math
import warnings

import pytest
import torch

from rl4text.algorithms.ppo import PPO, PPOConfig
from rl4text.config import load_config
from rl4text.models import disable_dropout
from rl4text.policies import ActorCritic
from rl4text.policies.actor_critic import enable_gradient_checkpointing, frozen_copy, sequence_logits
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


def test_autocast_runs_every_pass_in_bfloat16_and_keeps_weights_and_optimiser_fp32(kind, tokenizer):
    """``model.autocast``: generation, the behaviour log-probs taken from it, the reference pass and the update
    forward all run under the same bfloat16 autocast (each one's LM head outputs bfloat16), so the behaviour
    log-probs match the update's first forward to bfloat16 rounding and PPO's first ratio is 1 to that rounding;
    parameters, gradients and AdamW state stay float32.

    Tolerance: ``2**-5 * max|logit|``, four bfloat16 machine epsilons (2**-7) of the largest logit. A log-prob is
    ``logit[token] - logsumexp(logits)``, so a relative rounding of the logits moves it by about that much times
    the logits' scale; measured here: 0.0024 / 0.45 (tiny Llama, KV-cached steps vs one full pass) and
    0.034 / 5.3 (tiny T5, whose CPU SDPA takes another kernel when gradients are on), i.e. ~0.7 epsilon. A pass
    left in float32 would still pass this bound, so the hooks check each pass's dtype, and the bfloat16 scores
    must differ from the float32 ones by more than float32 rounding (they do by 1e-3 to 3e-2)."""
    model, seq2seq = tiny_model(kind, tokenizer)
    policy = ActorCritic(model, seq2seq)
    policy.autocast_dtype = torch.bfloat16
    reference = frozen_copy(model)
    phase, dtypes = ["rollout"], {}

    def record(name):
        return lambda mod, inp, out: dtypes.setdefault((phase[0], name), set()).add(out.dtype)

    model.get_output_embeddings().register_forward_hook(record("policy"))
    reference.get_output_embeddings().register_forward_hook(record("reference"))
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    algo = PPO(PPOConfig(n_epochs=1, minibatch_size=16), policy, optimizer)
    torch.manual_seed(0)
    r = collect_rollout(policy, reference, tokenizer, SAMPLES * 4, max_new_tokens=12, max_prompt_length=24)
    m = r.response_mask
    phase[0] = "update"
    new = policy.score(r.prompt_ids, r.prompt_mask, r.response_ids, m.long())  # the update's first forward
    phase[0] = "fp32"  # the same weights without autocast
    with torch.no_grad():
        logits, _ = sequence_logits(model, seq2seq, r.prompt_ids, r.prompt_mask, r.response_ids, m.long())
        tol = 2**-5 * logits.abs().max().item()
        fp32_policy = ActorCritic(model, seq2seq)
        fp32 = fp32_policy.score(r.prompt_ids, r.prompt_mask, r.response_ids, m.long(), with_values=False)
    diff = ((new.logprobs.detach() - r.logprobs) * m).abs().max().item()
    assert diff <= tol, (diff, tol)
    ratio = torch.exp(new.logprobs.detach() - r.logprobs)[m.bool()]
    assert (ratio - 1).abs().max().item() <= math.expm1(tol)
    assert ((r.ref_logprobs - fp32.logprobs) * m).abs().max().item() <= tol  # the same weights, in bf16
    assert ((new.logprobs.detach() - fp32.logprobs) * m).abs().max().item() > 1e-5  # bf16 is really on
    phase[0] = "step"
    grad_dtypes = set()
    optimizer.register_step_pre_hook(
        lambda opt, *_: grad_dtypes.update(p.grad.dtype for g in opt.param_groups for p in g["params"])
    )
    stats = algo.update(algo.prepare(r, m * 0.5))
    assert dtypes == {
        ("rollout", "policy"): {torch.bfloat16},
        ("rollout", "reference"): {torch.bfloat16},
        ("update", "policy"): {torch.bfloat16},
        ("step", "policy"): {torch.bfloat16},
        ("fp32", "policy"): {torch.float32},
    }
    assert stats and all(p.dtype == torch.float32 for p in policy.parameters())
    assert grad_dtypes == {torch.float32}
    assert all(p.grad is None for p in policy.parameters())  # freed after the step (Algorithm.step)
    states = [s for s in optimizer.state.values() if s]
    assert states and all(s["exp_avg"].dtype == s["exp_avg_sq"].dtype == torch.float32 for s in states)


@pytest.mark.parametrize("model", [[], T5], ids=["causal", "seq2seq"])
def test_autocast_trains_the_smoke_config(tmp_path, model):
    cfg = load_config(
        SMOKE,
        [*model, "model.autocast=true", "train.iterations=2", "eval.every=0", "eval.max_samples=4"],
    )
    from rl4text.train import train

    train(cfg, tmp_path / "run")
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert sum("rollout/reward_mean" in r for r in rows) == 2
    assert (tmp_path / "run" / "eval.json").is_file() and (tmp_path / "run" / "model").is_dir()
