"""The fast path is the env's semantics: force the rollout's tokens through TextGenEnv step by step and compare
rewards, episode ends and (unbatched, uncached) policy log-probs and values, for causal and seq2seq models."""

import gymnasium as gym
import pytest
import torch

import rl4text
from rl4text.policies import ActorCritic, observation_logits
from rl4text.policies.actor_critic import frozen_copy
from rl4text.rewards import build_reward
from rl4text.rollout import collect_rollout

from .conftest import SAMPLES, tiny_model

REWARD = [
    {"name": "char_fraction", "weight": 1.0, "args": {"chars": "aeiou"}},
    {"name": "chrf", "weight": 0.5},
]


@pytest.mark.parametrize(
    ("arch", "temperature"),
    [("causal", 1.0), ("causal", 0.7), ("seq2seq", 1.0), ("seq2seq", 0.7), ("gpt2", 1.0), ("bart", 1.0)],
)
def test_rollout_matches_env_step_by_step(arch, tokenizer, temperature):
    model, seq2seq = tiny_model(arch, tokenizer)
    policy = ActorCritic(model, seq2seq)
    reference = frozen_copy(model)
    max_new, max_prompt = 10, 24
    torch.manual_seed(1)
    samples = SAMPLES * 2
    rollout = collect_rollout(
        policy,
        reference,
        tokenizer,
        samples,
        max_new_tokens=max_new,
        max_prompt_length=max_prompt,
        temperature=temperature,
        with_values=True,
    )
    reward_fn = build_reward(REWARD)
    batched_rewards = reward_fn(
        [s["prompt"] for s in samples], rollout.completions, [s["references"] for s in samples]
    )
    env = gym.make(
        rl4text.ENV_ID,
        tokenizer=tokenizer,
        samples=samples,
        reward=REWARD,
        max_new_tokens=max_new,
        max_prompt_length=max_prompt,
        seq2seq=seq2seq,
    )
    saw_eos = saw_truncation = False
    for i, sample in enumerate(samples):
        obs, info = env.reset(options={"sample": sample})
        assert info["prompt"] == sample["prompt"]
        n = int(rollout.lengths[i])
        total = 0.0
        for t in range(n):
            action = int(rollout.response_ids[i, t])
            logits, value = observation_logits(policy, obs, temperature)
            logp = torch.log_softmax(logits, -1)[action]
            assert abs(float(logp) - float(rollout.logprobs[i, t])) <= 1e-5, (i, t)
            assert abs(float(value) - float(rollout.values[i, t])) <= 1e-5, (i, t)
            obs, reward, terminated, truncated, info = env.step(action)
            total += reward
            last = t == n - 1
            assert (terminated or truncated) == last
            if not last:
                assert reward == 0.0
        saw_eos |= terminated
        saw_truncation |= truncated
        assert terminated == (int(rollout.response_ids[i, n - 1]) == tokenizer.eos_token_id)
        assert truncated == (not terminated and n == max_new)
        assert info["completion"] == rollout.completions[i]
        assert total == pytest.approx(batched_rewards[i], abs=1e-12)
        # everything after the end is padding and masked
        assert rollout.response_mask[i, n:].sum() == 0
        assert (rollout.logprobs[i, n:] == 0).all()
    assert saw_truncation  # a random tiny model rarely emits EOS within 10 tokens


def test_eos_terminates_and_masks(kind, tokenizer):
    """Force EOS early with a logits processor; the rollout must stop there and mask the rest."""
    model, seq2seq = tiny_model(kind, tokenizer)
    policy = ActorCritic(model, seq2seq)
    eos = tokenizer.eos_token_id

    def eos_at_step_3(logits, generated):
        if generated.shape[1] == 2:
            logits = torch.full_like(logits, -1e9)
            logits[:, eos] = 0.0
        return logits

    rollout = collect_rollout(
        policy,
        None,
        tokenizer,
        SAMPLES,
        max_new_tokens=8,
        max_prompt_length=24,
        logits_processor=eos_at_step_3,
    )
    assert rollout.lengths.tolist() == [3.0] * len(SAMPLES)
    assert rollout.ended_with_eos(eos).all()
    assert (rollout.response_ids[:, 3:] == tokenizer.pad_token_id).all()
    assert rollout.ref_logprobs is None
