"""Scoring only what was sampled equals the old full-logits scoring (|delta| <= 1e-5 in fp32), causal and seq2seq:
the selective chunked log-softmax and entropy, log-probs and values taken from generation itself, and the
bit-packed NLPO mask."""

import pytest
import torch

from rl4text.algorithms.nlpo import NLPO, NLPOConfig
from rl4text.core import entropy_from_logits
from rl4text.policies import ActorCritic
from rl4text.policies.actor_critic import apply_action_mask, sequence_logits, token_logprobs
from rl4text.policies.scoring import PackedMask, chunked_entropy, selective_logprobs
from rl4text.rollout import collect_rollout

from .conftest import SAMPLES, tiny_model


def full_scores(policy, r, temperature, allowed=None):
    """The old formula: full [B, T, V] float32 logits, log-softmax, gather; entropy from the full tensor."""
    logits, hidden = sequence_logits(
        policy.model,
        policy.seq2seq,
        r.prompt_ids,
        r.prompt_mask,
        r.response_ids,
        r.response_mask.long(),
        True,
    )
    logits = apply_action_mask(logits.float() / temperature, allowed)
    values = policy.value_head(hidden.float()).squeeze(-1)
    return token_logprobs(logits, r.response_ids), values, entropy_from_logits(logits)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_selective_logprobs_and_grad_equal_full_log_softmax(temperature):
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, requires_grad=True)
    tokens = torch.randint(0, 11, (3, 5))
    allowed = torch.rand(3, 5, 11) < 0.6
    allowed.scatter_(-1, tokens[..., None], True)
    for mask in (None, allowed):
        full = token_logprobs(apply_action_mask(logits / temperature, mask), tokens)
        fast = selective_logprobs(
            logits, tokens, temperature, mask, chunk=4
        )  # chunks that split rows unevenly
        assert torch.allclose(fast, full, atol=1e-6)
        w = torch.randn(3, 5)
        (g_full,) = torch.autograd.grad((full * w).sum(), logits)
        (g_fast,) = torch.autograd.grad((fast * w).sum(), logits)
        assert torch.allclose(g_fast, g_full, atol=1e-6)
        ent = chunked_entropy(logits, temperature, mask, chunk=4)
        assert torch.allclose(
            ent, entropy_from_logits(apply_action_mask(logits / temperature, mask)), atol=1e-5
        )


def test_hand_worked_selective_logprob():
    # logits [0, ln 2, ln 3] / T=1: softmax = [1/6, 2/6, 3/6]; token 1 -> ln(1/3); with token 2 masked: [1/3, 2/3]
    logits = torch.tensor([[0.0, 0.6931471805599453, 1.0986122886681098]])
    tok = torch.tensor([1])
    assert selective_logprobs(logits, tok).item() == pytest.approx(-1.0986123, abs=1e-6)
    allowed = torch.tensor([[True, True, False]])
    assert selective_logprobs(logits, tok, 1.0, allowed).item() == pytest.approx(-0.4054651, abs=1e-6)
    # T = 0.5 doubles the logits: [0, ln 4, ln 9] -> p(token 1) = 4/14
    assert selective_logprobs(logits, tok, 0.5).item() == pytest.approx(-1.2527630, abs=1e-6)


def test_packed_mask_round_trips_and_counts():
    allowed = torch.rand(4, 3, 19) < 0.5
    packed = PackedMask.pack(allowed)
    assert packed.bits.shape == (4, 3, 3) and packed.shape == (4, 3, 19)
    assert torch.equal(packed.unpack(), allowed)
    assert torch.equal(packed[torch.tensor([2, 0])].unpack(), allowed[[2, 0]])
    assert torch.equal(packed.counts(), allowed.sum(-1).int())


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_generation_scores_equal_scoring_pass(kind, tokenizer, temperature):
    model, seq2seq = tiny_model(kind, tokenizer)
    policy = ActorCritic(model, seq2seq)
    torch.nn.init.normal_(policy.value_head.weight)  # nonzero values, so they are really compared
    rollouts = []
    for from_gen in (True, False):
        torch.manual_seed(3)
        rollouts.append(
            collect_rollout(
                policy,
                None,
                tokenizer,
                SAMPLES * 2,
                max_new_tokens=10,
                max_prompt_length=24,
                temperature=temperature,
                score_from_generation=from_gen,
            )
        )
    fast, slow = rollouts
    assert torch.equal(fast.response_ids, slow.response_ids)
    with torch.no_grad():
        lp, values, _ = full_scores(policy, fast, temperature)
    m = fast.response_mask
    assert (fast.logprobs - lp * m).abs().max() <= 1e-5
    assert (slow.logprobs - lp * m).abs().max() <= 1e-5
    assert (fast.values - values * m).abs().max() <= 1e-5
    assert (fast.values - slow.values).abs().max() <= 1e-5 and fast.values.abs().max() > 0.01


def test_nlpo_generation_scores_equal_masked_scoring(kind, tokenizer):
    model, seq2seq = tiny_model(kind, tokenizer)
    policy = ActorCritic(model, seq2seq)
    nlpo = NLPO(
        NLPOConfig(top_mask=0.5, min_tokens_to_keep=2), policy, torch.optim.SGD(policy.parameters(), lr=0)
    )
    torch.manual_seed(5)
    r = collect_rollout(
        policy,
        None,
        tokenizer,
        SAMPLES * 2,
        max_new_tokens=8,
        max_prompt_length=24,
        temperature=0.8,
        action_masker=nlpo.action_masker,
    )
    assert isinstance(r.action_mask, PackedMask)
    allowed = r.action_mask.unpack()
    assert allowed.sum() < allowed.numel() * 0.9  # the mask really restricts
    with torch.no_grad():
        lp, _, _ = full_scores(policy, r, 0.8, allowed)
        scored = policy.score(
            r.prompt_ids,
            r.prompt_mask,
            r.response_ids,
            r.response_mask.long(),
            0.8,
            action_mask=r.action_mask,
            entropy=True,
        )
    m = r.response_mask
    assert (r.logprobs - lp * m).abs().max() <= 1e-5
    assert ((scored.logprobs - lp) * m).abs().max() <= 1e-5
    assert r.action_mask.nbytes * 8 >= allowed.numel() > r.action_mask.nbytes * 7  # 1 bit per token
