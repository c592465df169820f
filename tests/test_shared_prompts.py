"""Samples of the same prompt share one pass over it (``rollout.share_prompts``): the shared scoring, reference and
generation paths equal the per-row ones (|delta| <= 1e-5 in fp32, gradients included), causal and seq2seq, and
the prompt's tokens really are run once per distinct prompt."""

import pytest
import torch

from rl4text.policies import ActorCritic
from rl4text.policies.actor_critic import (
    enable_gradient_checkpointing,
    prompt_groups,
    reference_logprobs,
    sequence_logits,
)
from rl4text.rollout import StepScores, collect_rollout, encode_samples, generate

from .conftest import SAMPLES, tiny_model

# 3 distinct prompts of different lengths (left padding differs), in an interleaved order, 7 rows
ROWS = [SAMPLES[0], SAMPLES[1], SAMPLES[0], SAMPLES[2], SAMPLES[1], SAMPLES[0], SAMPLES[2]]


def test_prompt_groups_hand_worked():
    ids = torch.tensor([[5, 6], [7, 8], [5, 6], [9, 9], [7, 8]])
    mask = torch.ones_like(ids)
    first, inverse = prompt_groups(ids, mask)
    assert len(first) == 3
    assert torch.equal(ids[first][inverse], ids)  # every row gets its own prompt back
    assert sorted(first.tolist()) == [0, 1, 3]  # each distinct prompt is taken at its first row
    # same tokens but different padding are different prompts; all distinct -> None
    assert prompt_groups(ids[:2], mask[:2]) is None
    assert prompt_groups(torch.tensor([[0, 6], [0, 6]]), torch.tensor([[0, 1], [1, 1]])) is None
    assert prompt_groups(ids[:1], mask[:1]) is None


def batch(tokenizer, seq2seq, T=6, seed=0):
    prompt_ids, prompt_mask = encode_samples(tokenizer, ROWS, 24, seq2seq, False)
    g = torch.Generator().manual_seed(seed)
    response_ids = torch.randint(3, len(tokenizer), (len(ROWS), T), generator=g)
    lengths = torch.tensor([6, 2, 4, 6, 1, 5, 3])
    response_mask = (torch.arange(T)[None] < lengths[:, None]).long()
    response_ids = response_ids.masked_fill(response_mask == 0, tokenizer.pad_token_id)
    return prompt_ids, prompt_mask, response_ids, response_mask


def test_shared_scoring_equals_per_row_scoring_with_gradients(kind, tokenizer):
    model, seq2seq = tiny_model(kind, tokenizer)
    policy = ActorCritic(model, seq2seq)
    torch.nn.init.normal_(policy.value_head.weight)
    args = batch(tokenizer, seq2seq)
    weights = torch.randn(args[2].shape, generator=torch.Generator().manual_seed(1))
    out = {}
    for share in (False, True):
        policy.share_prompts = share
        policy.zero_grad()
        scored = policy.score(*args, 0.7, entropy=True, entropy_grad=True)
        m = args[3].float()
        loss = ((scored.logprobs + scored.values + 0.1 * scored.entropy) * weights * m).sum()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}
        out[share] = (scored, grads)
    (a, ga), (b, gb) = out[False], out[True]
    m = args[3].float()
    assert (a.logprobs * m - b.logprobs * m).abs().max() <= 1e-5
    assert (a.values * m - b.values * m).abs().max() <= 1e-5
    assert (a.entropy * m - b.entropy * m).abs().max() <= 1e-5
    assert ga.keys() == gb.keys() and len(ga) > 5
    for name in ga:  # the prompt's gradient is the sum over its samples, as when each row ran it
        assert torch.allclose(ga[name], gb[name], atol=1e-5, rtol=1e-4), name
    assert max(g.abs().max() for g in ga.values()) > 1e-3  # gradients really flow


def test_shared_reference_equals_per_row(kind, tokenizer):
    model, seq2seq = tiny_model(kind, tokenizer)
    model.eval()
    args = batch(tokenizer, seq2seq, seed=2)
    per_row = reference_logprobs(model, seq2seq, *args, 0.9)
    shared = reference_logprobs(model, seq2seq, *args, 0.9, share_prompts=True)
    m = args[3].float()
    assert (per_row * m - shared * m).abs().max() <= 1e-5


def test_shared_prefill_generates_the_same_and_records_the_same(kind, tokenizer):
    model, seq2seq = tiny_model(kind, tokenizer)
    model.eval()
    prompt_ids, prompt_mask = encode_samples(tokenizer, ROWS, 24, seq2seq, False)
    runs = []
    for share in (False, True):
        torch.manual_seed(4)
        record = StepScores(hidden=True)
        ids, mask = generate(
            model,
            seq2seq,
            prompt_ids,
            prompt_mask,
            max_new_tokens=8,
            eos_id=tokenizer.eos_token_id,
            pad_id=tokenizer.pad_token_id,
            temperature=0.8,
            record=record,
            share_prompts=share,
        )
        runs.append((ids, mask, *record.stacked()))
    (i0, m0, lp0, h0), (i1, m1, lp1, h1) = runs
    assert torch.equal(i0, i1) and torch.equal(m0, m1)
    assert (lp0 - lp1).abs().max() <= 1e-5 and (h0 - h1).abs().max() <= 1e-5


def count_embedded_tokens(model, fn):
    """Runs ``fn`` and returns how many token positions went through the (decoder's or only) input embedding
    and, for seq2seq, the encoder."""
    seen = []
    vocab = model.get_input_embeddings().num_embeddings
    token_embeddings = [  # (a seq2seq model's encoder and decoder each call their own; not T5's position biases)
        m for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.num_embeddings == vocab
    ]
    handles = [
        m.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].numel())) for m in token_embeddings
    ]
    try:
        fn()
    finally:
        for h in handles:
            h.remove()
    return sum(seen)


def test_the_prompt_runs_once_per_distinct_prompt(kind, tokenizer):
    model, seq2seq = tiny_model(kind, tokenizer)
    model.eval()
    args = batch(tokenizer, seq2seq)
    B, P = args[0].shape
    T = args[2].shape[1]
    counts = {
        share: count_embedded_tokens(
            model, lambda share=share: sequence_logits(model, seq2seq, *args, share_prompts=share)
        )
        for share in (False, True)
    }
    U = 3
    if seq2seq:  # encoder: U prompts instead of B; decoder: B x T either way (T5 shares one embedding)
        assert counts[False] == B * P + B * T and counts[True] == U * P + B * T
    else:  # prefix P-1 once per distinct prompt, then the last prompt token + T-1 response tokens per row
        assert counts[False] == B * (P + T) and counts[True] == U * (P - 1) + B * T


def test_rollout_and_config_switch(kind, tokenizer):
    model, seq2seq = tiny_model(kind, tokenizer)
    policy = ActorCritic(model, seq2seq)
    ref, _ = tiny_model(kind, tokenizer, seed=1)
    ref.eval()
    rollouts = []
    for share in (False, True):
        torch.manual_seed(3)
        rollouts.append(
            collect_rollout(
                policy, ref, tokenizer, ROWS, max_new_tokens=8, max_prompt_length=24, share_prompts=share
            )
        )
    a, b = rollouts
    assert torch.equal(a.response_ids, b.response_ids)
    for field in ("logprobs", "values", "ref_logprobs"):
        assert (getattr(a, field) - getattr(b, field)).abs().max() <= 1e-5, field


@pytest.mark.parametrize("grad", [True, False])
def test_gradient_checkpointing_keeps_causal_rows_separate(kind, tokenizer, grad):
    model, seq2seq = tiny_model(kind, tokenizer)
    policy = ActorCritic(model, seq2seq)
    enable_gradient_checkpointing(policy)
    with torch.set_grad_enabled(grad):
        # Hugging Face drops the KV cache in a checkpointed differentiable pass; a seq2seq encoder output is shared
        assert policy.prompts_shared() == (seq2seq or not grad)
        args = batch(tokenizer, seq2seq)
        shared = policy.score(*args)
        policy.share_prompts = False
        per_row = policy.score(*args)
    m = args[3].float()
    assert (shared.logprobs * m - per_row.logprobs * m).abs().max() <= 1e-5


def test_a_dropped_shared_cache_is_an_error_not_a_wrong_score(tokenizer):
    model, _ = tiny_model("causal", tokenizer)
    policy = ActorCritic(model, False)
    enable_gradient_checkpointing(policy)
    model.train()  # a checkpointed differentiable pass: Hugging Face drops the KV cache
    with pytest.raises(RuntimeError, match="did not keep the shared prompt's KV cache"):
        sequence_logits(model, False, *batch(tokenizer, False), share_prompts=True)


def test_shuffled_minibatches_are_regrouped_for_micro_batches(kind, tokenizer):
    """GRPO shuffles its minibatch rows; split into micro-batches, the samples of a prompt are put back on
    adjacent rows so each micro-batch shares whole prompts, and the update is the per-row one (to rounding)."""
    from rl4text.algorithms.grpo import GRPO, GRPOConfig

    rows = [s for s in SAMPLES for _ in range(2)]  # k = 2 samples of each of 4 prompts
    params = []
    for share in (False, True):
        model, seq2seq = tiny_model(kind, tokenizer)
        policy = ActorCritic(model, seq2seq)
        policy.share_prompts = share
        algo = GRPO(
            GRPOConfig(k=2, minibatch_size=8, kl_coef=0.0),
            policy,
            torch.optim.SGD(policy.parameters(), lr=0.5),
        )
        algo.micro_batch_size = 2
        torch.manual_seed(0)
        r = collect_rollout(policy, None, tokenizer, rows, max_new_tokens=6, max_prompt_length=24)
        rewards = torch.linspace(-1, 1, r.response_mask.numel()).view_as(r.response_mask) * r.response_mask
        batch = algo.prepare(r, rewards)
        if share:
            shuffled = batch.select(torch.tensor([5, 0, 3, 6, 1, 7, 2, 4]))
            grouped = algo._group_prompts(shuffled)
            pairs = grouped.prompt_ids.view(4, 2, -1)
            assert torch.equal(pairs[:, 0], pairs[:, 1])  # each micro-batch of 2 holds one prompt's samples
        torch.manual_seed(1)
        algo.update(batch)
        params.append({n: p.detach().clone() for n, p in policy.named_parameters()})
    moved = max((params[0][n] - tiny_model(kind, tokenizer)[0].state_dict()[n[6:]]).abs().max() for n in params[0]
                if n.startswith("model."))  # fmt: skip
    assert moved > 1e-4
    assert max((params[0][n] - params[1][n]).abs().max().item() for n in params[0]) <= 1e-5
