"""DPO: the sigmoid / label-smoothed / IPO losses and the Wilson interval by hand, pairs encoded as RL encodes them,
the config rules, and `rl4text dpo configs/dpo_smoke.yaml` end to end (learning, run folder, exact resume, model/)."""

import json
import math

import pytest
import torch

from rl4text.cli import main as cli_main
from rl4text.config import ConfigError, load_config
from rl4text.core.dpo import dpo_loss, wilson_interval
from rl4text.dpo import train as dpo_train
from rl4text.dpo.config import load_dpo_config
from rl4text.dpo.data import Pair, collate_pairs, groups_to_pairs, sequence_logprobs
from rl4text.models import load_model, load_tokenizer
from rl4text.policies import ActorCritic
from rl4text.rm.data import Group
from rl4text.rollout import encode_samples
from rl4text.train import seed_everything

from .conftest import tiny_model

SMOKE = "configs/dpo_smoke.yaml"
T5 = "model.random_init={model_type: t5, d_model: 64, d_ff: 128, num_layers: 2, num_heads: 4, d_kv: 16}"

# three pairs: (policy chosen, policy rejected, reference chosen, reference rejected) summed log-probs
#   pair 1: chosen log-ratio -4 - -5 = 1, rejected -6 - -4 = -2, h = 3  (without the reference: -4 - -6 = 2)
#   pair 2: chosen -3 - -2 = -1, rejected -3 - -4 = 1, h = -2
#   pair 3: both log-ratios 0, h = 0 (a tie: policy = reference)
PC, PR = torch.tensor([-4.0, -3.0, -1.0]), torch.tensor([-6.0, -3.0, -2.0])
RC, RR = torch.tensor([-5.0, -2.0, -1.0]), torch.tensor([-4.0, -4.0, -2.0])


def softplus(x: float) -> float:
    """log(1 + e^x); -log sigmoid(z) = softplus(-z)."""
    return math.log1p(math.exp(x))


def test_dpo_sigmoid_loss_and_stats_by_hand():
    # beta = 0.5: beta * h = [1.5, -1, 0]; -log sigmoid(z) = log(1 + e^-z)
    loss, s = dpo_loss(PC, PR, RC, RR, beta=0.5)
    expected = (softplus(-1.5) + softplus(1.0) + math.log(2.0)) / 3
    assert loss.item() == pytest.approx(expected)
    torch.testing.assert_close(s["chosen_rewards"], torch.tensor([0.5, -0.5, 0.0]))
    torch.testing.assert_close(s["rejected_rewards"], torch.tensor([-1.0, 0.5, 0.0]))
    torch.testing.assert_close(s["margins"], torch.tensor([1.5, -1.0, 0.0]))
    torch.testing.assert_close(s["accuracy"], torch.tensor([1.0, 0.0, 0.5]))  # a tie is half right


def test_dpo_label_smoothing_by_hand():
    # eps = 0.1: 0.9 * log(1 + e^-z) + 0.1 * log(1 + e^z) per pair, z = [1.5, -1, 0]
    loss, _ = dpo_loss(PC, PR, RC, RR, beta=0.5, label_smoothing=0.1)
    rows = [0.9 * softplus(-z) + 0.1 * softplus(z) for z in (1.5, -1.0, 0.0)]
    assert loss.item() == pytest.approx(sum(rows) / 3)
    assert loss.item() == pytest.approx((0.35141328 + 1.21326169 + 0.69314718) / 3, abs=1e-6)


def test_ipo_loss_by_hand():
    # (h - 1/(2 beta))^2 with h = [3, -2, 0]: beta 0.1 -> target 5: [4, 49, 25], mean 26; beta 0.25 -> target 2: 7
    assert dpo_loss(PC, PR, RC, RR, beta=0.1, loss_type="ipo")[0].item() == pytest.approx(26.0)
    assert dpo_loss(PC, PR, RC, RR, beta=0.25, loss_type="ipo")[0].item() == pytest.approx(7.0)
    with pytest.raises(ValueError, match="sigmoid loss only"):
        dpo_loss(PC, PR, RC, RR, beta=0.1, loss_type="ipo", label_smoothing=0.1)
    with pytest.raises(ValueError, match="valid: sigmoid, ipo"):
        dpo_loss(PC, PR, RC, RR, beta=0.1, loss_type="hinge")


def test_dpo_gradient_direction():
    # d loss / d logp(chosen) < 0 (raise it), d / d logp(rejected) > 0, with weight beta * sigmoid(-beta h) / B
    pc, pr = PC.clone().requires_grad_(True), PR.clone().requires_grad_(True)
    dpo_loss(pc, pr, RC, RR, beta=0.5)[0].backward()
    weight = 0.5 * torch.sigmoid(-0.5 * torch.tensor([3.0, -2.0, 0.0])) / 3
    torch.testing.assert_close(pc.grad, -weight)
    torch.testing.assert_close(pr.grad, weight)


def test_wilson_interval_by_hand():
    # 8 of 10: centre (0.8 + z^2/20) / (1 + z^2/10), half z / (1 + z^2/10) * sqrt(0.016 + z^2/400)
    z2 = 1.959963984540054**2
    centre = (0.8 + z2 / 20) / (1 + z2 / 10)
    half = math.sqrt(z2) / (1 + z2 / 10) * math.sqrt(0.8 * 0.2 / 10 + z2 / 400)
    low, high = wilson_interval(8, 10)
    assert (low, high) == pytest.approx((centre - half, centre + half))
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # the published Wilson interval of 8/10
    # 0 of 10 is not the degenerate [0, 0] of the normal approximation
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


# ---------------------------------------------------------------------------------------------- data


def test_groups_to_pairs_from_ratings_and_explicit_pairs():
    import random

    rated = Group(key="g", prompt="p", completions=["a", "b", "c"], scores=[1.0, 3.0, 1.0])
    explicit = Group(key="h", prompt="q", completions=["x", "y"], pairs=[(1, 0)])
    pairs = groups_to_pairs([rated, explicit], None, random.Random(0))
    # ratings imply every pair whose scores differ: b > a, b > c (a = c is no preference)
    assert [(p.chosen, p.rejected, p.group) for p in pairs] == [
        ("b", "a", "g"),
        ("b", "c", "g"),
        ("y", "x", "h"),
    ]
    assert len(groups_to_pairs([rated, explicit], 1, random.Random(0))) == 2


def test_pairs_are_encoded_and_scored_as_rl_does(kind, tokenizer):
    model, seq2seq = tiny_model(kind, tokenizer)
    pairs = [Pair("letters: abc", "aei", "xyz q", "g1"), Pair("hi", "o", "bb", "g2")]
    batch = collate_pairs(
        tokenizer,
        pairs,
        max_prompt_length=24,
        max_response_length=8,
        seq2seq=seq2seq,
        use_chat_template=False,
    )
    # prompts exactly as a rollout encodes them (chosen rows then rejected rows)
    ids, mask = encode_samples(tokenizer, [{"prompt": p.prompt} for p in pairs] * 2, 24, seq2seq, False)
    torch.testing.assert_close(batch.prompt_ids, ids)
    torch.testing.assert_close(batch.prompt_mask, mask)
    # responses as a rollout generates them: the text's tokens, then EOS, right-padded
    eos = tokenizer.eos_token_id
    first = tokenizer("aei", add_special_tokens=False)["input_ids"] + [eos]
    assert batch.response_ids[0, : len(first)].tolist() == first
    assert batch.response_mask.sum(-1).tolist() == [4, 2, 6, 3]
    # summed log-probs = the sum of the per-token log-probs RL's scoring function gives
    scored = ActorCritic(model, seq2seq).score(
        batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask, with_values=False
    )
    expected = (scored.logprobs * batch.response_mask).sum(-1)
    torch.testing.assert_close(sequence_logprobs(model, seq2seq, batch), expected)


def test_reference_of_an_adapter_model_is_its_base_with_adapters_disabled():
    import contextlib

    from torch import nn

    class AdapterModel(nn.Module):  # the PEFT interface the reference relies on: disable_adapter()
        def __init__(self):
            super().__init__()
            self.adapters_on = True

        @contextlib.contextmanager
        def disable_adapter(self):
            self.adapters_on = False
            try:
                yield
            finally:
                self.adapters_on = True

    model = AdapterModel()
    with dpo_train.as_reference(model) as ref:
        assert ref is model and not model.adapters_on  # no copy: the same weights, adapters off
    assert model.adapters_on
    plain = nn.Linear(2, 2)
    with dpo_train.as_reference(plain) as ref:
        assert ref is plain  # a plain model is scored as loaded, before any step


def test_config_rules():
    with pytest.raises(ConfigError, match=r"label_smoothing applies to dpo\.loss=sigmoid"):
        load_dpo_config(SMOKE, ["dpo.loss=ipo", "dpo.label_smoothing=0.1"])
    with pytest.raises(ConfigError, match=r"needs data\.path"):
        load_dpo_config(SMOKE, ["data.path=null"])
    with pytest.raises(ConfigError, match=r"unknown key 'dpo\.bta'"):
        load_dpo_config(SMOKE, ["dpo.bta=0.2"])
    with pytest.raises(ConfigError, match=r"dpo\.beta must be > 0"):
        load_dpo_config(SMOKE, ["dpo.beta=0"])
    assert load_dpo_config(SMOKE, ["dpo.loss=ipo"]).dpo.loss == "ipo"


# ---------------------------------------------------------------------------------------------- end to end


def run_rows(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("model", ["causal", "seq2seq"])
def test_dpo_smoke_raises_held_out_accuracy(tmp_path, model, capsys):
    out = tmp_path / "run"
    extra = [T5] if model == "seq2seq" else []
    assert cli_main(["dpo", SMOKE, "--output-dir", str(out), *extra]) == 0
    result = json.loads((out / "eval.json").read_text())
    # at the start the policy is the reference: every margin is 0, accuracy 0.5, loss log 2
    assert result["at_start"]["preference_accuracy"] == 0.5
    assert result["at_start"]["loss"] == pytest.approx(math.log(2.0))
    assert result["n_pairs"] == result["data"]["held_out_pairs"] == 75
    assert result["preference_accuracy_low"] > 0.5, result  # above chance, with its 95% interval
    assert result["reward_margin"] > 0
    for name in ("config.yaml", "metrics.jsonl", "checkpoints", "model/config.json"):
        assert (out / name).exists(), name
    rows = run_rows(out)
    assert (
        rows[0]["step"] == 0
        and rows[-1]["final"]
        and any("eval/preference_accuracy" in r for r in rows[1:-1])
    )
    # model/ is usable as model.name_or_path of an RL run (its tokenizer travels with it)
    cfg = load_config(
        "configs/smoke.yaml",
        [f"model.name_or_path={out / 'model'}", "model.random_init=null", "model.tokenizer=null"],
    )
    tok = load_tokenizer(cfg.model)
    loaded, seq2seq = load_model(cfg.model, tok)
    assert seq2seq == (model == "seq2seq")
    # ... and it is not the starting model (built again as the run built it: same config, same seed)
    start_cfg = load_dpo_config(SMOKE, extra)
    seed_everything(start_cfg.train.seed)
    fresh, _ = load_model(start_cfg.model, load_tokenizer(start_cfg.model))
    trained = dict(loaded.named_parameters())
    common = [n for n, _ in fresh.named_parameters() if n in trained]
    assert common and any(not torch.equal(dict(fresh.named_parameters())[n], trained[n]) for n in common)


def without_time(row):
    return {k: v for k, v in row.items() if not k.startswith("time/")}


def test_dpo_resume_continues_exactly(tmp_path, monkeypatch):
    common = ["train.max_steps=12", "train.save_every=6", "train.log_every=3", "train.eval_every=6"]
    assert cli_main(["dpo", SMOKE, "--output-dir", str(tmp_path / "full"), *common]) == 0

    real, calls = dpo_train.sequence_logprobs, {"n": 0}

    def crash_at_step_8(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(dpo_train, "sequence_logprobs", crash_at_step_8)
    with pytest.raises(RuntimeError, match="killed"):
        cli_main(["dpo", SMOKE, "--output-dir", str(tmp_path / "resumed"), *common])
    monkeypatch.setattr(dpo_train, "sequence_logprobs", real)
    assert cli_main(["dpo", SMOKE, "--output-dir", str(tmp_path / "resumed"), "--resume", *common]) == 0
    a = [without_time(r) for r in run_rows(tmp_path / "full")]
    b = [without_time(r) for r in run_rows(tmp_path / "resumed")]
    assert a == b
    assert (tmp_path / "full" / "eval.json").read_text() == (tmp_path / "resumed" / "eval.json").read_text()
    # a changed config is refused rather than silently mixed
    assert (
        cli_main(
            ["dpo", SMOKE, "--output-dir", str(tmp_path / "resumed"), "--resume", *common, "dpo.beta=0.3"]
        )
        == 2
    )


def test_dpo_lands_in_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from rl4text.wandb_offline import read_wandb_run

    for var, value in [
        ("WANDB_MODE", "offline"),
        ("WANDB_SILENT", "true"),
        ("WANDB_CONSOLE", "off"),
        ("WANDB_DISABLE_GIT", "true"),
        ("WANDB_BASE_URL", "http://127.0.0.1:9"),  # any network attempt fails at once, locally
        ("WANDB_DIR", str(tmp_path / "wandb-dir")),
        ("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config")),
        ("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache")),
        ("WANDB_DATA_DIR", str(tmp_path / "wandb-data")),
    ]:
        monkeypatch.setenv(var, value)
    out = tmp_path / "run"
    args = ["train.max_steps=4", "train.log_every=2", "tracking.wandb.enabled=true"]
    assert cli_main(["dpo", SMOKE, "--output-dir", str(out), *args]) == 0
    run = read_wandb_run(out)
    assert run["run"]["name"] == "dpo-vowel_pairs-random-llama-seed0"
    assert run["config"]["dpo"]["beta"] == 0.1
    steps = {h["_step"]: h for h in run["history"]}
    assert set(steps) == {0, 2, 4}
    assert steps[0]["eval/preference_accuracy"] == 0.5 and "loss" in steps[2]
    final = json.loads((out / "eval.json").read_text())
    assert steps[4]["eval/preference_accuracy"] == pytest.approx(final["preference_accuracy"])
