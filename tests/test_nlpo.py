"""NLPO: the top-p mask, sampling and scoring under exactly that mask, the mask policy's refresh, learning, resume."""

import json

import pytest
import torch

from rl4text.algorithms.nlpo import NLPO, NLPOConfig, top_p_mask
from rl4text.algorithms.ppo import PPO, PPOConfig
from rl4text.config import load_config
from rl4text.core.shaping import kl_penalized_rewards
from rl4text.policies import ActorCritic
from rl4text.policies.actor_critic import MASKED_LOGIT, decoder_start_id, frozen_copy
from rl4text.registry import ALGORITHMS
from rl4text.rollout import collect_rollout, encode_samples, generate
from rl4text.train import train

from .conftest import SAMPLES, tiny_model

SMOKE = "configs/smoke.yaml"
T5 = ["model.random_init={model_type: t5, d_model: 64, d_ff: 128, num_layers: 2, num_heads: 4, d_kv: 16}"]
P = torch.tensor([0.5, 0.3, 0.15, 0.05])


# ------------------------------------------------------------------------------------------- the top-p mask


@pytest.mark.parametrize(
    "top_mask, min_keep, kept",
    [
        (0.7, 1, [0, 1]),  # 0.5 < 0.7, 0.5 + 0.3 reaches it
        (0.8, 1, [0, 1]),  # 0.5 + 0.3 reaches 0.8 exactly: the set stops there
        (0.81, 1, [0, 1, 2]),
        (0.4, 1, [0]),  # the top token alone already reaches it
        (0.1, 3, [0, 1, 2]),  # min_tokens_to_keep overrides a tiny top_mask
        (0.7, 4, [0, 1, 2, 3]),
        (1.0, 1, [0, 1, 2, 3]),
    ],
)
def test_top_p_mask_hand_values(top_mask, min_keep, kept):
    # the same distribution in another token order: the set follows the tokens, not their positions
    perm = torch.tensor([2, 0, 3, 1])  # token perm[j] gets probability P[j]
    probs = torch.empty(4).scatter(0, perm, P)
    allowed = top_p_mask(torch.stack([P, probs]), top_mask, min_keep)
    assert allowed[0].nonzero().flatten().tolist() == kept
    assert sorted(allowed[1].nonzero().flatten().tolist()) == sorted(perm[kept].tolist())


def test_top_p_mask_ties_rank_by_token_id():
    uniform = torch.full((2, 4), 0.25)
    assert top_p_mask(uniform, 0.5).tolist() == [[True, True, False, False]] * 2
    # ties inside and at the boundary of the set: the lower id ranks first
    probs = torch.tensor([0.1, 0.3, 0.2, 0.3, 0.1])  # ranks: 1, 3 (tie), 2, then 0, 4 (tie)
    assert top_p_mask(probs, 0.35).tolist() == [False, True, False, True, False]
    assert top_p_mask(probs, 0.85).tolist() == [True, True, True, True, False]
    # many equal probabilities: the same lowest ids on every row and every call
    many = torch.full((3, 50), 0.02)
    assert top_p_mask(many, 0.51).equal(top_p_mask(many, 0.51))
    assert top_p_mask(many, 0.51).nonzero()[:, 1].tolist() == list(range(26)) * 3


def test_config_is_registered_and_validated():
    assert ALGORITHMS.get("nlpo") is NLPO
    assert issubclass(NLPOConfig, PPOConfig) and issubclass(NLPO, PPO)
    for bad in (
        {"top_mask": 0.0},
        {"top_mask": 1.2},
        {"target_update_iterations": 0},
        {"min_tokens_to_keep": 0},
    ):
        with pytest.raises(ValueError):
            NLPOConfig(**bad)
    with pytest.raises(ValueError):  # PPO's own checks still run
        NLPOConfig(minibatch_size=0)


# ----------------------------------------------------------------------------- sampling under the recorded mask


@torch.no_grad()
def full_forward_logits(model, seq2seq, prompt, context):
    """Next-token logits ``[V]`` from one uncached forward over the real prompt and context (no padding)."""
    if seq2seq:
        start = torch.full((1, 1), decoder_start_id(model), dtype=torch.long)
        out = model(input_ids=prompt[None], decoder_input_ids=torch.cat([start, context[None]], 1))
    else:
        out = model(input_ids=torch.cat([prompt, context])[None])
    return out.logits[0, -1].float()


def sure_decisions(probs, top_mask, min_keep, tol=1e-5):
    """Independent top-p membership ``[V]``: 1 (in) / 0 (out) where no perturbation of ``tol`` per probability
    could flip it, -1 for genuine near-ties. A token is in when less than ``top_mask`` is ranked before it."""
    V = len(probs)
    others = ~torch.eye(V, dtype=torch.bool)
    surely_before = probs[None, :] > probs[:, None] + tol  # [j, k]: k outranks j whatever the noise
    maybe_before = (probs[None, :] >= probs[:, None] - tol) & others
    surely_in = (maybe_before.sum(1) < min_keep) | ((maybe_before * probs).sum(1) < top_mask - tol)
    surely_out = (surely_before.sum(1) >= min_keep) & ((surely_before * probs).sum(1) >= top_mask + tol)
    return torch.where(surely_in, 1, torch.where(surely_out, 0, -1))


def nlpo_with_other_mask_model(kind, tokenizer, temperature, **cfg):
    """NLPO on a tiny policy whose mask model has other weights, so the mask cannot be read off the policy."""
    model, seq2seq = tiny_model(kind, tokenizer)
    policy = ActorCritic(model, seq2seq)
    nlpo = NLPO(NLPOConfig(**cfg), policy, torch.optim.AdamW(policy.parameters()))
    nlpo.mask_model.load_state_dict(tiny_model(kind, tokenizer, seed=1)[0].state_dict())
    return policy, nlpo


@pytest.mark.parametrize("top_mask", [0.5, 0.9])
def test_sampled_tokens_are_allowed_and_scored_renormalised(kind, tokenizer, top_mask):
    temperature = 0.8
    policy, nlpo = nlpo_with_other_mask_model(
        kind, tokenizer, temperature, top_mask=top_mask, min_tokens_to_keep=2
    )
    torch.manual_seed(0)
    r = collect_rollout(
        policy,
        None,
        tokenizer,
        SAMPLES * 4,
        max_new_tokens=8,
        max_prompt_length=24,
        temperature=temperature,
        action_masker=nlpo.action_masker,
    )
    V = r.action_mask.unpack().shape[-1]
    assert (
        r.action_mask.unpack().shape == (*r.response_ids.shape, V)
        and r.action_mask.unpack().dtype == torch.bool
    )
    assert r.action_mask.unpack()[r.response_mask == 0].all()  # no action after the end: nothing masked there
    sure = borderline = shrunk = 0
    gaps = []
    for i in range(len(r.samples)):
        prompt = r.prompt_ids[i][r.prompt_mask[i].bool()]
        for t in range(int(r.lengths[i])):
            token, allowed = int(r.response_ids[i, t]), r.action_mask.unpack()[i, t]
            context = r.response_ids[i, :t]
            assert allowed[token], (i, t)  # sampled inside the recorded mask
            # ... and inside the mask model's own top-p set, recomputed without batching, padding or cache
            mask_logits = full_forward_logits(nlpo.mask_model, policy.seq2seq, prompt, context)
            decisions = sure_decisions(torch.softmax(mask_logits / temperature, -1), top_mask, 2)
            assert decisions[token] != 0, (i, t)
            known = decisions >= 0
            assert torch.equal(decisions[known].bool(), allowed[known]), (i, t)
            sure, borderline = sure + int(known.sum()), borderline + int((~known).sum())
            # log-prob of the renormalised masked distribution, not the full one
            logits = full_forward_logits(policy.model, policy.seq2seq, prompt, context) / temperature
            masked = logits[token] - torch.logsumexp(logits[allowed], -1)
            assert abs(masked.item() - r.logprobs[i, t].item()) <= 1e-5, (i, t)
            if int(allowed.sum()) < V:
                shrunk += 1
                gaps.append(float(masked - torch.log_softmax(logits, -1)[token]))
    assert borderline <= 0.01 * sure
    assert shrunk > 0 and min(gaps) > 0 and max(gaps) > 0.05  # the mask did change the distribution


def test_scoring_uses_the_recorded_masks(kind, tokenizer):
    policy, nlpo = nlpo_with_other_mask_model(kind, tokenizer, 1.0, top_mask=0.5)
    masker = nlpo.action_masker
    ids, mask = encode_samples(tokenizer, SAMPLES * 2, 24, policy.seq2seq, False)
    processor, seen = masker.processor(ids, mask, 1.0), []

    def spy(logits, generated):  # what sampling actually saw at each step
        out = processor(logits, generated)
        seen.append(out > MASKED_LOGIT / 2)
        return out

    torch.manual_seed(0)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    response, response_mask = generate(
        policy.model,
        policy.seq2seq,
        ids,
        mask,
        max_new_tokens=8,
        eos_id=eos,
        pad_id=pad,
        logits_processor=spy,
    )
    real = response_mask.bool()
    # change the mask model between sampling and scoring: scoring must still use the masks sampled under
    with torch.no_grad():
        for param in nlpo.mask_model.parameters():
            param.mul_(3.0)
    args = (ids, mask, response, response_mask.long())
    scored = masker.sequence_mask(*args, 1.0)
    assert torch.equal(scored[real], torch.stack(seen, 1)[real])
    # the recording is used once; another call recomputes with a full forward (here: of the changed model)
    recomputed = masker.sequence_mask(*args, 1.0)
    assert not torch.equal(recomputed[real], scored[real])
    assert recomputed[~real].all()


def test_recomputed_mask_matches_recorded_up_to_ties(kind, tokenizer):
    policy, nlpo = nlpo_with_other_mask_model(kind, tokenizer, 1.0, top_mask=0.5)
    masker = nlpo.action_masker
    torch.manual_seed(0)
    for temperature in (1.0, 0.7):  # the masker builds its masks at the temperature the rollout samples at
        torch.manual_seed(0)
        r = collect_rollout(
            policy,
            None,
            tokenizer,
            SAMPLES * 2,
            max_new_tokens=8,
            max_prompt_length=24,
            temperature=temperature,
            action_masker=masker,
        )
        assert r.temperature == temperature
        args = (r.prompt_ids, r.prompt_mask, r.response_ids, r.response_mask.long())
        again = masker.sequence_mask(*args, temperature)
        differ = (again != r.action_mask.unpack())[r.response_mask.bool()].any(-1).float().mean()
        assert differ <= 0.05  # KV-cached and full forwards agree but for rare near-ties
    # a recorded batch cannot be scored at a temperature other than the one it was sampled at
    recorder = masker.processor(r.prompt_ids, r.prompt_mask, 0.7)
    recorder.masks = list(r.action_mask.unpack().unbind(1))
    with pytest.raises(ValueError, match="temperature"):
        masker.sequence_mask(*args, 1.0)


# ------------------------------------------------------------------------------------------- the update


def rollout_and_rewards(policy, reference, tokenizer, masker, seed):
    torch.manual_seed(seed)
    r = collect_rollout(
        policy,
        reference,
        tokenizer,
        SAMPLES * 4,
        max_new_tokens=8,
        max_prompt_length=24,
        action_masker=masker,
    )
    scores = torch.linspace(-1.0, 1.0, len(r.samples))
    rewards, _ = kl_penalized_rewards(scores, r.logprobs, r.ref_logprobs, r.response_mask, 0.05, "k1")
    return r, rewards


def test_top_mask_one_is_ppo(kind, tokenizer):
    common = {"n_epochs": 2, "minibatch_size": 8}
    runs = {}
    for name in ("ppo", "nlpo"):
        model, seq2seq = tiny_model(kind, tokenizer)
        policy = ActorCritic(model, seq2seq)
        optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2)
        if name == "ppo":
            algo = PPO(PPOConfig(**common), policy, optimizer)
        else:
            algo = NLPO(NLPOConfig(top_mask=1.0, target_update_iterations=1, **common), policy, optimizer)
        r, rewards = rollout_and_rewards(policy, frozen_copy(model), tokenizer, algo.action_masker, seed=3)
        torch.manual_seed(5)
        stats = algo.update(algo.prepare(r, rewards))
        runs[name] = (r, stats, policy.state_dict())
    (r_ppo, s_ppo, p_ppo), (r_nlpo, s_nlpo, p_nlpo) = runs["ppo"], runs["nlpo"]
    assert r_nlpo.action_mask.unpack().all()
    assert torch.equal(r_ppo.response_ids, r_nlpo.response_ids)
    assert torch.equal(r_ppo.logprobs, r_nlpo.logprobs)
    assert s_nlpo == {**s_ppo, **{k: v for k, v in s_nlpo.items() if k.startswith("nlpo/")}}
    assert s_nlpo["nlpo/mask_size"] == len(tokenizer)
    assert all(torch.equal(p_ppo[k], p_nlpo[k]) for k in p_ppo)
    assert s_ppo["policy/grad_norm"] > 0  # the update did something


def test_mask_model_refreshes_every_mu_updates(tokenizer):
    model, seq2seq = tiny_model("causal", tokenizer)
    policy = ActorCritic(model, seq2seq)
    cfg = NLPOConfig(top_mask=0.5, target_update_iterations=3, n_epochs=1, minibatch_size=16)
    nlpo = NLPO(cfg, policy, torch.optim.AdamW(policy.parameters(), lr=1e-2))
    r, rewards = rollout_and_rewards(policy, None, tokenizer, nlpo.action_masker, seed=0)
    batch = nlpo.prepare(r, rewards)

    def weights(m):
        return {k: v.clone() for k, v in m.state_dict().items()}

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    initial = weights(model)
    stats = nlpo.update(batch)
    assert 1 <= stats["nlpo/mask_size"] < len(tokenizer)
    # after update 1 the policy moved and the mask model still holds the starting weights
    assert same(weights(nlpo.mask_model), initial) and not same(weights(model), initial)
    assert (stats["nlpo/mask_refreshed"], stats["nlpo/updates_since_refresh"]) == (0.0, 1.0)
    last_refresh = initial
    for n in range(2, 8):
        stats = nlpo.update(batch)
        refreshed = n % 3 == 0
        if refreshed:
            last_refresh = weights(model)
        assert stats["nlpo/mask_refreshed"] == float(refreshed), n
        assert stats["nlpo/updates_since_refresh"] == n % 3, n
        assert same(weights(nlpo.mask_model), last_refresh), n
        assert same(weights(nlpo.mask_model), weights(model)) == refreshed, n
    # the state holds the counter and a snapshot of the mask weights; a fresh NLPO takes both
    state = nlpo.state_dict()
    nlpo.update(batch)
    nlpo.update(batch)  # update 9 refreshes: the saved snapshot must not follow
    fresh_model, _ = tiny_model("causal", tokenizer, seed=2)
    fresh = NLPO(cfg, ActorCritic(fresh_model, False), torch.optim.AdamW(fresh_model.parameters()))
    fresh.load_state_dict(state)
    assert fresh.updates == 7 and same(weights(fresh.mask_model), last_refresh)


# ---------------------------------------------------------------------------------------- training runs


def training_rewards(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "rollout/reward_mean" in r]


@pytest.mark.parametrize("model_overrides", [[], T5], ids=["causal", "seq2seq"])
def test_nlpo_raises_reward(tmp_path, model_overrides):
    cfg = load_config(
        SMOKE,
        [
            "algorithm.name=nlpo",
            "algorithm.target_update_iterations=4",
            "train.iterations=12",
            "eval.every=0",
            "train.save_final_model=false",
            *model_overrides,
        ],
    )
    train(cfg, tmp_path / "run")
    rows = training_rewards(tmp_path / "run")
    rewards = [r["rollout/reward_mean"] for r in rows]
    # against the first iteration: the smoke task is learned within 2-4 iterations, so a mean of the first three
    # already includes much of the rise
    assert sum(rewards[-3:]) / 3 > rewards[0] + 0.3, rewards
    assert [r["nlpo/mask_refreshed"] for r in rows] == [float(i % 4 == 0) for i in range(1, 13)]
    assert all(1 <= r["nlpo/mask_size"] < 48 for r in rows)  # the mask restricted the char vocabulary


def without_time(row):
    return {k: v for k, v in row.items() if not k.startswith("time/")}


def test_nlpo_resume_continues_exactly(tmp_path):
    # mu = 2, stopped after 3: the mask model (refreshed at 2) lags the policy and update 4 refreshes, so both
    # the saved mask weights and the saved update counter are needed to continue exactly
    common = [
        "algorithm.name=nlpo",
        "algorithm.target_update_iterations=2",
        "train.save_final_model=false",
        "eval.every=0",
    ]
    train(load_config(SMOKE, ["train.iterations=4", *common]), tmp_path / "straight")
    train(load_config(SMOKE, ["train.iterations=3", *common]), tmp_path / "resumed")
    train(load_config(SMOKE, ["train.iterations=4", *common]), tmp_path / "resumed", resume=True)
    a = [without_time(r) for r in training_rewards(tmp_path / "straight")]
    b = [without_time(r) for r in training_rewards(tmp_path / "resumed")]
    assert [r["iteration"] for r in b] == [1, 2, 3, 4]
    assert a == b
    assert [r["nlpo/mask_refreshed"] for r in b] == [0.0, 1.0, 0.0, 1.0]
