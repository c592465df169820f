"""Supervised warm start: the loss mask, memorisation on tiny models, trained tokenizers, and the hand-off to RL."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rl4text.cli import main
from rl4text.config import ConfigError, ModelConfig, TokenizerTrainingConfig, load_config
from rl4text.models import load_model, load_tokenizer
from rl4text.sft import (
    IGNORE_INDEX,
    batch_order,
    build_tokenizer_and_model,
    check_sft_config,
    collate,
    encode_targets,
    lr_factor,
    make_examples,
    sft,
    sft_loss,
    train_tokenizer,
)
from rl4text.train import train
from tests.conftest import SAMPLES, tiny_model

SFT_SMOKE = "configs/sft_smoke.yaml"
FAST = [
    "task.args={n_train: 16, n_val: 8}",
    "sft.batch_size=8",
    "sft.max_steps=60",
    "sft.log_every=5",
    "sft.warmup_steps=5",
    "sft.learning_rate=0.01",
    "eval.max_samples=8",
    "eval.at_start=false",
    "task.eval_split=train",  # memorisation: scored on the samples it learned
    "rollout.max_new_tokens=14",
]
SEQ2SEQ = [
    "model.random_init={model_type: t5, d_model: 32, d_ff: 64, num_layers: 2, num_heads: 4, d_kv: 8}",
]


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def hand_loss(model, seq2seq, tokenizer, samples, targets):
    """Masked cross-entropy computed one unpadded sample at a time: only target tokens count."""
    total, count = 0.0, 0
    for sample, target in zip(samples, targets):
        prompt = tokenizer(sample["prompt"], add_special_tokens=seq2seq)["input_ids"]
        tgt = torch.tensor(target)
        if seq2seq:
            start = model.config.decoder_start_token_id
            logits = model(
                input_ids=torch.tensor([prompt]), decoder_input_ids=torch.tensor([[start, *target[:-1]]])
            ).logits[0]
        else:
            logits = model(input_ids=torch.tensor([prompt + target])).logits[0]
            logits = logits[len(prompt) - 1 : len(prompt) - 1 + len(target)]  # position t predicts t + 1
        total += F.cross_entropy(logits.float(), tgt, reduction="sum").item()
        count += len(target)
    return total / count, count


def test_loss_masks_prompt_and_padding(tokenizer, kind):
    model, seq2seq = tiny_model(kind, tokenizer)
    samples = SAMPLES[:3]  # prompts and targets of different lengths: both sides get padding
    targets = encode_targets(tokenizer, [s["references"][0] for s in samples], max_length=32)
    assert all(t[-1] == tokenizer.eos_token_id for t in targets)
    batch = collate(tokenizer, samples, targets, 64, seq2seq, use_chat_template=False)
    assert len({len(t) for t in targets}) > 1 and int(batch.prompt_mask.sum()) < batch.prompt_mask.numel()
    with torch.no_grad():
        loss, n = sft_loss(model, seq2seq, batch)
        expected, count = hand_loss(model, seq2seq, tokenizer, samples, targets)
    assert n == count == sum(len(t) for t in targets)
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    if not seq2seq:  # the full causal sequence: -100 on every prompt token and on padding
        full = batch.causal_inputs()
        P = batch.prompt_ids.shape[1]
        assert (full["labels"][:, :P] == IGNORE_INDEX).all()
        assert (full["labels"][full["attention_mask"] == 0] == IGNORE_INDEX).all()
        assert int((full["labels"] != IGNORE_INDEX).sum()) == n


def test_references_and_truncation(tokenizer):
    assert len(make_examples(SAMPLES, "first")) == len(SAMPLES)
    assert len(make_examples(SAMPLES, "each")) == len(SAMPLES) + 1
    (short,) = encode_targets(tokenizer, ["abcdefgh"], max_length=4)
    assert short == tokenizer("abcd", add_special_tokens=False)["input_ids"]  # cut targets lose their EOS


def test_schedule_and_batches():
    assert lr_factor(0, 100, 10, "linear") == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, "linear") == pytest.approx(1.0)
    assert lr_factor(99, 100, 10, "cosine") < 0.01 and lr_factor(50, 100, 0, "constant") == 1.0
    lengths = [i % 7 for i in range(100)]
    batches = batch_order(lengths, 8, np.random.default_rng(0), group_by_length=True)
    assert sorted(i for b in batches for i in b) == list(range(100))


@pytest.mark.parametrize("overrides", [[], SEQ2SEQ], ids=["causal", "seq2seq"])
def test_sft_memorises_and_hands_off_to_rl(tmp_path, overrides):
    cfg = load_config(SFT_SMOKE, [*FAST, *overrides])
    final = sft(cfg, tmp_path / "sft")
    rows = [r for r in read_metrics(tmp_path / "sft") if "loss" in r]
    assert rows[0]["step"] == 5 and rows[-1]["step"] == 60
    assert rows[-1]["loss"] < 0.3 * rows[0]["loss"]
    assert {"lr", "tokens_per_s", "grad_norm"} <= set(rows[-1])
    saved = json.loads((tmp_path / "sft" / "eval.json").read_text())
    assert saved["chrf"] == final["chrf"] > 50
    # the model folder loads as model.name_or_path ...
    folder = tmp_path / "sft" / "model"
    mcfg = ModelConfig(name_or_path=str(folder))
    tok = load_tokenizer(mcfg)
    model, seq2seq = load_model(mcfg, tok)
    assert seq2seq == bool(overrides) and len(tok) == model.get_input_embeddings().weight.shape[0]
    # ... and RL starts from it
    rl = load_config(
        "configs/smoke.yaml",
        [
            f"model.name_or_path={folder}",
            "model.random_init=null",
            "model.tokenizer=null",
            "train.iterations=1",
            "rollout.batch_size=4",
            "eval.max_samples=4",
            "train.save_final_model=false",
        ],
    )
    scores = train(rl, tmp_path / "rl")
    assert "reward" in scores and (tmp_path / "rl" / "eval.json").is_file()


def test_sft_is_deterministic_and_never_clobbers(tmp_path):
    cfg = load_config(SFT_SMOKE, [*FAST, "sft.max_steps=10", "eval.max_samples=2"])
    sft(cfg, tmp_path / "a")
    sft(cfg, tmp_path / "b")
    loss = [[r["loss"] for r in read_metrics(tmp_path / d) if "loss" in r] for d in "ab"]
    assert loss[0] == loss[1]
    assert main(["sft", SFT_SMOKE, *FAST, "--output-dir", str(tmp_path / "a")]) == 2


def test_trained_tokenizer_is_wired_into_the_model(tmp_path):
    cfg = load_config(
        SFT_SMOKE,
        [
            *SEQ2SEQ,
            "model.tokenizer=null",
            "sft.tokenizer_training={vocab_size: 300, kind: bpe}",
            "task.args={n_train: 32, n_val: 4}",
        ],
    )
    from rl4text.registry import TASKS

    train_samples = TASKS.build(cfg.task.name, **cfg.task.args).split("train")
    tok, model, seq2seq = build_tokenizer_and_model(cfg, train_samples)
    assert seq2seq and len(tok) <= 300 and (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id) == (0, 1, 3)
    c = model.config
    assert (c.pad_token_id, c.eos_token_id, c.decoder_start_token_id) == (0, 1, tok.bos_token_id)
    assert c.vocab_size == len(tok) == model.get_input_embeddings().weight.shape[0]
    ids = tok("letters: abc")["input_ids"]
    assert ids[-1] == tok.eos_token_id and tok.decode(ids, skip_special_tokens=True).strip() == "letters: abc"
    # unigram, causal: no EOS appended to prompts (RL encodes causal prompts without special tokens)
    uni = train_tokenizer(
        ["a cat sat on the mat", "a dog"] * 20, TokenizerTrainingConfig(40, 1, "unigram"), False
    )
    assert uni.eos_token_id == 1 and uni("a cat")["input_ids"][-1] != 1


def test_config_errors(capsys):
    assert main(["sft", SFT_SMOKE, "sft.epoch=2"]) == 2
    err = capsys.readouterr().err
    assert "rl4text sft: error" in err and "sft.epoch" in err and "epochs" in err
    trained = "sft.tokenizer_training={vocab_size: 100}"
    pretrained = ["model.random_init=null", "model.name_or_path=x", "model.tokenizer=null", trained]
    with pytest.raises(ConfigError, match=r"needs model\.random_init"):
        check_sft_config(load_config(SFT_SMOKE, pretrained))  # RL configs derived from it still load
    with pytest.raises(ConfigError, match="not both"):
        check_sft_config(load_config(SFT_SMOKE, [trained]))
    with pytest.raises(ConfigError, match=r"sft\.max_steps"):
        load_config(SFT_SMOKE, ["sft.max_steps=0"])
    load_config("configs/smoke.yaml")  # RL configs without an sft section still load


def test_sft_from_scratch_preset_passes_the_checks_rl_would_refuse():
    """A random model with ``sft.tokenizer_training`` is valid for SFT (it trains its tokenizer), not for RL."""
    from pathlib import Path

    from rl4text.train import check_config_runs

    preset = Path(__file__).resolve().parent.parent / "configs" / "sft_multi30k_t5_scratch.yaml"
    cfg = load_config(preset)
    check_sft_config(cfg, str(preset))
    with pytest.raises(ConfigError, match=r"RL on a model\.random_init model needs model\.tokenizer"):
        check_config_runs(cfg, str(preset))
