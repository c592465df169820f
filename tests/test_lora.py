"""LoRA through PEFT: a free reference (adapters disabled), training and exact resume with adapter-only
checkpoints, a merged plain model/ folder, TRPO over the adapters, and micro-batch accumulation."""

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from rl4text.algorithms.base import TrainBatch
from rl4text.algorithms.ppo import PPO, PPOConfig
from rl4text.algorithms.trpo import TRPO, TRPOConfig
from rl4text.config import ConfigError, load_config
from rl4text.policies import ActorCritic
from rl4text.policies.actor_critic import reference_logprobs, sequence_logits
from rl4text.policies.lora import AdaptersDisabled, add_lora, lora_parameters
from rl4text.rollout import collect_rollout
from rl4text.train import build, train

from .conftest import SAMPLES, tiny_model

pytest.importorskip("peft")

SMOKE = "configs/smoke.yaml"
T5 = ["model.random_init={model_type: t5, d_model: 64, d_ff: 128, num_layers: 2, num_heads: 4, d_kv: 16}"]
LORA = ["model.lora={r: 8, alpha: 16, target_modules: [q_proj, v_proj, q, v, lm_head]}"]


def rows_of(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in r.items() if not k.startswith("time/")} for r in rows if "rollout/reward_mean" in r
    ]


def lora_policy(kind, tokenizer):
    model, seq2seq = tiny_model(kind, tokenizer)
    base = copy.deepcopy(model)
    peft_model = add_lora(model, seq2seq, r=4, alpha=8, dropout=0.0, target_modules=None)
    torch.manual_seed(1)
    for name, p in lora_parameters(peft_model).items():  # B starts at 0 (identity): make the adapters matter
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    return base, ActorCritic(peft_model, seq2seq), seq2seq


def test_reference_under_disabled_adapters_equals_base_logprobs(kind, tokenizer):
    base, policy, seq2seq = lora_policy(kind, tokenizer)
    torch.manual_seed(0)
    r = collect_rollout(policy, None, tokenizer, SAMPLES * 2, max_new_tokens=8, max_prompt_length=24)
    args = (r.prompt_ids, r.prompt_mask, r.response_ids, r.response_mask.long(), 0.9)
    ref = reference_logprobs(AdaptersDisabled(policy.model), seq2seq, *args)
    assert (ref - reference_logprobs(base, seq2seq, *args)).abs().max() <= 1e-6
    with torch.no_grad():
        adapted = policy.score(*args, with_values=False).logprobs
    assert (adapted - ref).abs().max() > 1e-2  # the adapters are really on in the policy
    # nothing was copied: the reference holds no parameters of its own
    assert list(AdaptersDisabled(policy.model).parameters()) == []


def test_trpo_steps_only_the_adapters(tokenizer):
    _, policy, _ = lora_policy("causal", tokenizer)
    opt = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=0.0)
    algo = TRPO(TRPOConfig(max_kl=1e-3), policy, opt)
    names = {n for n, p in policy.model.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n for n in names)
    torch.manual_seed(0)
    r = collect_rollout(policy, None, tokenizer, SAMPLES * 2, max_new_tokens=8, max_prompt_length=24)
    batch = algo.prepare(r, torch.randn_like(r.response_mask) * r.response_mask)
    before = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
    stats = algo.update(batch)
    assert stats["trpo/accepted"] == 1.0
    after = dict(policy.model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in names)
    assert all(torch.equal(before[n], after[n]) for n in before if n not in names)


def test_micro_batches_give_the_update_of_one_minibatch(kind, tokenizer):
    results = []
    for micro in (None, 3):
        model, seq2seq = tiny_model(kind, tokenizer)
        policy = ActorCritic(model, seq2seq)
        algo = PPO(
            PPOConfig(n_epochs=1, minibatch_size=8, ent_coef=0.01),
            policy,
            torch.optim.SGD(policy.parameters(), lr=0.5),
        )
        algo.micro_batch_size = micro
        torch.manual_seed(0)
        r = collect_rollout(policy, None, tokenizer, SAMPLES * 2, max_new_tokens=8, max_prompt_length=24)
        batch = algo.prepare(
            r, torch.linspace(-1, 1, r.response_mask.numel()).view_as(r.response_mask) * r.response_mask
        )
        torch.manual_seed(1)
        stats = algo.update(batch)
        results.append((stats, {n: p.detach().clone() for n, p in policy.named_parameters()}))
    (s1, p1), (s2, p2) = results
    assert max((p1[n] - p2[n]).abs().max().item() for n in p1) <= 1e-6
    assert (
        max(
            (p1[n] - tiny_model(kind, tokenizer)[0].state_dict().get(n[6:], p1[n])).abs().max().item()
            for n in p1
            if n.startswith("model.")
        )
        > 1e-4
    )
    for key in ("loss/policy", "loss/value", "loss/entropy", "policy/grad_norm"):
        assert s1[key] == pytest.approx(s2[key], rel=1e-5, abs=1e-7), key


@pytest.mark.parametrize("model_overrides", [[], T5], ids=["causal", "seq2seq"])
def test_lora_trains_resumes_exactly_and_saves_a_merged_model(tmp_path, model_overrides):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    common = [
        "train.learning_rate=1e-2",
        "eval.every=0",
        *LORA,
        "model.lora.keep_adapter=true",
        *model_overrides,
    ]
    cfg = load_config(SMOKE, ["train.iterations=12", *common])
    train(cfg, tmp_path / "run")
    rewards = [r["rollout/reward_mean"] for r in rows_of(tmp_path / "run")]
    assert sum(rewards[-3:]) / 3 > rewards[0] + 0.2, rewards
    ckpt = sorted((tmp_path / "run" / "checkpoints").glob("iter_*"))[-1]
    saved = load_file(ckpt / "policy.safetensors")
    assert saved and all("lora_" in k or k.startswith("value_head") for k in saved)
    # the merged model/ is a plain HF folder giving the trained policy's logits
    c = build(cfg)
    c.policy.model.load_state_dict(
        {k[6:]: v for k, v in saved.items() if k.startswith("model.")}, strict=False
    )
    auto = AutoModelForSeq2SeqLM if model_overrides else AutoModelForCausalLM
    merged = auto.from_pretrained(tmp_path / "run" / "model")
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert (tmp_path / "run" / "model" / "adapter" / "adapter_config.json").is_file()
    torch.manual_seed(0)
    r = collect_rollout(c.policy, None, c.tokenizer, SAMPLES, max_new_tokens=6, max_prompt_length=24)
    args = (r.prompt_ids, r.prompt_mask, r.response_ids, r.response_mask.long())
    with torch.no_grad():
        a, _ = sequence_logits(c.policy.model, c.policy.seq2seq, *args)
        b, _ = sequence_logits(merged.eval(), c.policy.seq2seq, *args)
    assert (a - b).abs().max() <= 1e-4
    # resume: 2 iterations, then on to 4, equals 4 straight
    short = ["train.save_final_model=false", *common]
    train(load_config(SMOKE, ["train.iterations=4", "train.save_every=2", *short]), tmp_path / "straight")
    train(load_config(SMOKE, ["train.iterations=2", *short]), tmp_path / "resumed")
    train(load_config(SMOKE, ["train.iterations=4", *short]), tmp_path / "resumed", resume=True)
    assert rows_of(tmp_path / "straight") == rows_of(tmp_path / "resumed")


def test_lora_with_a_separate_critic_is_refused():
    with pytest.raises(ConfigError, match=r"model\.critic=separate"):
        load_config(SMOKE, [*LORA, "model.critic=separate"])


def test_lora_checkpoint_and_nlpo_snapshot_hold_only_adapters(tmp_path):
    cfg = load_config(
        SMOKE,
        ["algorithm.name=nlpo", "train.iterations=1", "eval.every=0", "train.save_final_model=false", *LORA],
    )
    c = build(cfg)
    assert TrainBatch is not None and c.reference is not None and list(c.reference.parameters()) == []
    snap = c.algorithm.mask_model
    assert set(snap.state_dict()) == set(lora_parameters(c.policy.model))
    train(cfg, tmp_path / "run")
    ckpt = sorted((tmp_path / "run" / "checkpoints").glob("iter_*"))[-1]
    state = load_file(ckpt / "state.safetensors")
    assert state and all("lora_" in k for k in state if "mask_model" in k)


def test_gradient_checkpointing_saves_less_and_gives_the_same_update(tokenizer, kind):
    from rl4text.policies.actor_critic import enable_gradient_checkpointing

    results = []
    for checkpointing in (False, True):
        model, seq2seq = tiny_model(kind, tokenizer)
        policy = ActorCritic(model, seq2seq)
        if checkpointing:
            enable_gradient_checkpointing(policy)
        algo = PPO(
            PPOConfig(n_epochs=1, minibatch_size=8), policy, torch.optim.SGD(policy.parameters(), lr=0.5)
        )
        torch.manual_seed(0)
        r = collect_rollout(policy, None, tokenizer, SAMPLES * 2, max_new_tokens=8, max_prompt_length=24)
        batch = algo.prepare(r, r.response_mask * 0.5)
        saved = []

        def pack(t, saved=saved):
            saved.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            policy.score(r.prompt_ids, r.prompt_mask, r.response_ids, r.response_mask.long())
        algo.update(batch)
        results.append(({n: p.detach().clone() for n, p in policy.named_parameters()}, sum(saved)))
    (p1, bytes1), (p2, bytes2) = results
    assert bytes2 < 0.7 * bytes1  # activations of the layers are recomputed, not kept
    assert max((p1[n] - p2[n]).abs().max().item() for n in p1) <= 1e-6


def test_lora_on_a_bfloat16_base_trains_rloo_with_float32_adapters(tmp_path):
    """``model.dtype=bfloat16`` with LoRA: the frozen base (and so the KL reference) in bf16, the adapters, their
    gradients and AdamW state in float32 (PEFT casts them up), the value head float32; RLOO's k samples share
    their prompt. The leanest and fastest setting of benchmarks/vs_trl.py; the reward must rise."""
    cfg = load_config(
        SMOKE,
        ["train.iterations=12", "train.learning_rate=1e-2", "eval.every=0", "algorithm.name=rloo",
         "model.dtype=bfloat16", *LORA, "train.save_final_model=false"],
    )  # fmt: skip
    c = build(cfg)
    dtypes = {n: p.dtype for n, p in c.policy.named_parameters()}
    assert {d for n, d in dtypes.items() if "lora_" in n or n.startswith("value_head")} == {torch.float32}
    assert {d for n, d in dtypes.items() if "lora_" not in n and not n.startswith("value_head")} == {
        torch.bfloat16
    }
    train(cfg, tmp_path / "run")
    rewards = [r["rollout/reward_mean"] for r in rows_of(tmp_path / "run")]
    assert sum(rewards[-3:]) / 3 > rewards[0] + 0.2, rewards
