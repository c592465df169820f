"""Supervised warm start: the loss mask, memorisation on tiny models, trained tokenizers, and the hand-off to RL."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

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


# ---------------------------------------------------------------------------------------------- LoRA

CAUSAL_LORA = [
    "model.lora={r: 16, alpha: 32, target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head]}"
]
SEQ2SEQ_LORA = [*SEQ2SEQ, "model.lora={r: 16, alpha: 32, target_modules: [q, k, v, o, wi, wo, lm_head]}"]


def probe_logits(model, seq2seq):
    """Logits of fixed token ids (ids every tiny vocabulary here holds): ``[1, L, V]``."""
    ids = torch.tensor([[5, 9, 12, 7, 20, 3, 14, 6]])
    with torch.no_grad():
        if seq2seq:
            return model(input_ids=ids, decoder_input_ids=ids[:, :5]).logits
        return model(input_ids=ids).logits


def base_weights(peft_model) -> dict[str, torch.Tensor]:
    """The frozen base weights of a PEFT model under their names in the unwrapped model."""
    return {
        k.replace(".base_layer", ""): v.clone()
        for k, v in peft_model.get_base_model().state_dict().items()
        if "lora_" not in k
    }


@pytest.mark.parametrize("lora", [CAUSAL_LORA, SEQ2SEQ_LORA], ids=["causal", "seq2seq"])
def test_lora_sft_trains_only_adapters_and_saves_a_merged_model(tmp_path, monkeypatch, capsys, lora):
    """``model.lora`` in SFT: the toy task is learned through the adapters alone, the base weights stay
    bit-identical, and ``model/`` is a plain Hugging Face folder with the PEFT model's logits."""
    pytest.importorskip("peft")
    import rl4text.policies.lora as lora_mod
    import rl4text.sft as sft_mod

    seen = {}
    with_lora, merged = sft_mod.with_lora, lora_mod.merged_for_saving

    def record_start(model, cfg, seq2seq):
        seen["start"] = {k: v.clone() for k, v in model.state_dict().items()}
        return with_lora(model, cfg, seq2seq)

    def record_end(model):  # the trained PEFT model, just before its adapters are merged
        seen["base"], seen["adapters"] = base_weights(model), lora_mod.lora_parameters(model)
        seen["logits"] = probe_logits(model, bool(model.config.is_encoder_decoder))
        return merged(model)

    monkeypatch.setattr(sft_mod, "with_lora", record_start)
    monkeypatch.setattr(lora_mod, "merged_for_saving", record_end)
    cfg = load_config(SFT_SMOKE, [*FAST, *lora, "model.lora.keep_adapter=true"])
    final = sft(cfg, tmp_path / "sft")
    printed = capsys.readouterr().out
    assert "trainable (" in printed and "%, LoRA r=16)" in printed
    rows = [r for r in read_metrics(tmp_path / "sft") if "loss" in r]
    assert rows[-1]["loss"] < 0.3 * rows[0]["loss"] and "grad_norm" in rows[-1]
    assert final["chrf"] > 50
    # only the adapters trained: every base weight is the one the run started from, bit for bit
    assert seen["base"].keys() == seen["start"].keys()
    assert all(torch.equal(seen["base"][k], seen["start"][k]) for k in seen["start"])
    assert seen["adapters"] and all(p.abs().sum() > 0 for n, p in seen["adapters"].items() if "lora_B" in n)
    # model/ is a merged plain HF folder (no adapter keys) with the trained PEFT model's logits
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    seq2seq = lora is SEQ2SEQ_LORA
    auto = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    folder = tmp_path / "sft" / "model"
    loaded = auto.from_pretrained(folder)
    assert not any("lora_" in k or "base_layer" in k for k in loaded.state_dict())
    assert (probe_logits(loaded, seq2seq) - seen["logits"]).abs().max() <= 1e-5
    # model.lora.keep_adapter: the adapters alone, in PEFT's format, next to the merged model
    adapter = load_file(folder / "adapter" / "adapter_model.safetensors")
    assert {n.replace(".default", "").removeprefix("base_model.model.") for n in seen["adapters"]} <= {
        k.replace("base_model.model.", "") for k in adapter
    }
    assert (folder / "adapter" / "adapter_config.json").is_file()


@pytest.mark.parametrize(
    "overrides",
    [
        CAUSAL_LORA,
        [*SEQ2SEQ_LORA, "model.tokenizer=null", "sft.tokenizer_training={vocab_size: 300, kind: bpe}"],
    ],
    ids=["causal", "seq2seq-trained-tokenizer"],
)
def test_lora_sft_resumes_exactly(tmp_path, monkeypatch, overrides):
    """Adapter-only checkpoints: the resumed run rebuilds the same base (also a from-scratch model with a
    trained tokenizer, which LoRA supports) and ends with the uninterrupted run's metrics and model."""
    pytest.importorskip("peft")
    import rl4text.sft as sft_mod
    from tests.test_runtime import Interrupt, comparable, interrupt_at

    steps = [*FAST, "sft.max_steps=12", "sft.log_every=3", "sft.save_every=4", "sft.eval_every=6"]
    cfg = load_config(SFT_SMOKE, [*steps, *overrides, "eval.max_samples=4", "tracking.progress=none"])
    straight = sft_mod.sft(cfg, tmp_path / "straight")
    with monkeypatch.context() as m:
        interrupt_at(m, sft_mod, "log_step", lambda run, *_: run.step, 7)
        with pytest.raises(Interrupt):
            sft_mod.sft(cfg, tmp_path / "resumed")
    manifest = json.loads(
        (tmp_path / "resumed" / "checkpoints" / "iter_000004" / "manifest.json").read_text()
    )
    assert manifest["weights"] == "trainable"  # the adapters only: the frozen base is rebuilt from the config
    assert sft_mod.sft(cfg, tmp_path / "resumed", resume=True) == straight
    assert comparable(tmp_path / "resumed") == comparable(tmp_path / "straight")
    weights = [load_file(tmp_path / d / "model" / "model.safetensors") for d in ("straight", "resumed")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
