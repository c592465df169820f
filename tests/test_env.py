"""TextGenEnv against Gymnasium's checker, under a vector env, and its episode semantics."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rl4text
from rl4text.envs import TextGenEnv

from .conftest import SAMPLES


def make(tokenizer, **kwargs):
    args = dict(tokenizer=tokenizer, samples=SAMPLES, reward="chrf", max_new_tokens=6, max_prompt_length=32)
    args.update(kwargs)
    return gym.make(rl4text.ENV_ID, **args)


@pytest.mark.parametrize("seq2seq", [False, True])
def test_check_env(tokenizer, seq2seq):
    env = make(tokenizer, seq2seq=seq2seq)
    check_env(env.unwrapped, skip_render_check=True)


def test_registered_on_import():
    assert rl4text.ENV_ID in gym.registry


def test_episode_semantics(tokenizer):
    env = make(tokenizer)
    obs, info = env.reset(seed=0, options={"sample": 0})
    assert info == {"prompt": SAMPLES[0]["prompt"], "references": SAMPLES[0]["references"]}
    # causal: the prompt is left-padded at full width, the context empty
    n = len(tokenizer(SAMPLES[0]["prompt"], add_special_tokens=False)["input_ids"])
    assert obs["prompt_attention_mask"].tolist() == [0] * (32 - n) + [1] * n
    assert obs["context_attention_mask"].sum() == 0
    a = tokenizer.convert_tokens_to_ids("a")
    for t in range(5):
        obs, reward, terminated, truncated, info = env.step(a)
        assert (reward, terminated, truncated) == (0.0, False, False)
        assert obs["context_attention_mask"].sum() == t + 1
    obs, reward, terminated, truncated, info = env.step(a)
    assert truncated and not terminated
    assert info["completion"] == "aaaaaa"
    assert reward == pytest.approx(info["reward_components"]["chrf"])
    assert reward > 0  # "aeiou abc" shares the character 'a'
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.step(a)


def test_eos_terminates(tokenizer):
    env = make(tokenizer, reward={"name": "length", "args": {"target": 1}})
    env.reset(options={"sample": 1})
    env.step(tokenizer.convert_tokens_to_ids("b"))
    _, reward, terminated, truncated, info = env.step(tokenizer.eos_token_id)
    assert terminated and not truncated
    assert info["completion"] == "b"
    assert reward == 0.0  # length 1 == target


def test_reset_picks_sample_and_is_seeded(tokenizer):
    env = make(tokenizer)
    first = [env.reset(seed=7)[1]["prompt"]] + [env.reset()[1]["prompt"] for _ in range(5)]
    again = [env.reset(seed=7)[1]["prompt"]] + [env.reset()[1]["prompt"] for _ in range(5)]
    assert first == again
    custom = {"prompt": "custom prompt", "references": ["x"]}
    assert env.reset(options={"sample": custom})[1]["prompt"] == "custom prompt"


def test_dense_reward_sums_to_final(tokenizer):
    env = make(tokenizer, reward_every_step=True)
    env.reset(options={"sample": 0})
    total = 0.0
    for ch in "aeiou!":
        _, r, _term, trunc, info = env.step(tokenizer.convert_tokens_to_ids(ch))
        total += r
    assert trunc
    assert total == pytest.approx(info["episode_reward"])


def test_sync_vector_env(tokenizer):
    envs = gym.vector.SyncVectorEnv([lambda: make(tokenizer) for _ in range(3)])
    obs, _ = envs.reset(seed=3)
    assert obs["prompt_input_ids"].shape == (3, 32)
    finished = np.zeros(3, dtype=bool)
    for _ in range(6):
        obs, _rewards, term, trunc, _ = envs.step(envs.action_space.sample())
        finished |= term | trunc
    assert finished.all()
    envs.close()


def test_bad_input_is_explained(tokenizer):
    with pytest.raises(ValueError, match="at least one sample"):
        TextGenEnv(tokenizer, samples=[])
    with pytest.raises(ValueError, match="sample 0"):
        TextGenEnv(tokenizer, samples=[{"text": "no prompt"}])
    env = TextGenEnv(tokenizer, samples=SAMPLES)
    env.reset()
    with pytest.raises(ValueError, match="outside the action space"):
        env.step(10_000)
