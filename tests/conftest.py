"""Shared fixtures: a character tokenizer and tiny random causal / seq2seq models (built from configs, no Hub)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# W&B is on by default for users; tests opt in explicitly (tests/test_tracking.py) so runs stay fast and offline
os.environ.setdefault("WANDB_MODE", "disabled")

import pytest
import torch

from rl4text.config import ModelConfig
from rl4text.models import load_model, load_tokenizer

TINY_LLAMA = {
    "model_type": "llama",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
}
TINY_T5 = {
    "model_type": "t5",
    "d_model": 32,
    "d_ff": 64,
    "num_layers": 2,
    "num_heads": 4,
    "d_kv": 8,
}
TINY_MODELS = {
    "causal": TINY_LLAMA,
    "seq2seq": TINY_T5,
    # more architectures for the env-vs-rollout equivalence (absolute positions in GPT-2, BART's learned ones)
    "gpt2": {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 128},
    "bart": {
        "model_type": "bart",
        "d_model": 32,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_attention_heads": 4,
        "decoder_attention_heads": 4,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
        "max_position_embeddings": 128,
    },
}


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer(ModelConfig(random_init=TINY_LLAMA, tokenizer="char"))


def tiny_model(kind: str, tokenizer, seed: int = 0):
    torch.manual_seed(seed)
    return load_model(ModelConfig(random_init=TINY_MODELS[kind], tokenizer="char"), tokenizer)


@pytest.fixture(params=["causal", "seq2seq"])
def kind(request):
    return request.param


SAMPLES = [
    {"prompt": "letters: abc", "references": ["aeiou abc"]},
    {"prompt": "a much longer prompt: qwerty", "references": ["aeiou qwerty", "second reference"]},
    {"prompt": "hi", "references": ["aeiou hi"]},
    {"prompt": "letters: zz top", "references": ["aeiou zz"]},
]
