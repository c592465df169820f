"""End-to-end training on tiny models: the reward must rise, runs are reproducible, resume continues exactly."""

import json

import pytest
import torch
import yaml

from rl4text.cli import main
from rl4text.config import load_config
from rl4text.train import RunDirError, build, train

SMOKE = "configs/smoke.yaml"
T5 = [
    "model.random_init={model_type: t5, d_model: 64, d_ff: 128, num_layers: 2, num_heads: 4, d_kv: 16}",
]


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def training_rows(run_dir):
    return [r for r in read_metrics(run_dir) if "rollout/reward_mean" in r]


def without_time(row):
    return {k: v for k, v in row.items() if not k.startswith("time/")}


@pytest.mark.parametrize("model_overrides", [[], T5], ids=["causal", "seq2seq"])
def test_ppo_raises_reward_and_changes_parameters(tmp_path, model_overrides):
    cfg = load_config(
        SMOKE, ["train.iterations=16", "eval.every=0", "train.save_final_model=false", *model_overrides]
    )
    before = {k: v.clone() for k, v in build(cfg).policy.state_dict().items()}
    final = train(cfg, tmp_path / "run")
    rows = training_rows(tmp_path / "run")
    rewards = [r["rollout/reward_mean"] for r in rows]
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last > first + 0.3, rewards
    # the greedy policy on held-out prompts improved too
    evals = [r for r in read_metrics(tmp_path / "run") if "eval/reward" in r]
    assert final["reward"] > evals[0]["eval/reward"] + 0.3
    # parameters moved (value head and LM), checked against a fresh build with the same seed
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "run" / "checkpoints" / "iter_000016" / "policy.safetensors")
    changed = [k for k in saved if k in before and not torch.equal(saved[k], before[k])]
    assert any(k.startswith("value_head") for k in changed)
    assert any(k.startswith("model.") for k in changed)
    for key in (
        "policy/approx_kl",
        "ppo/clip_fraction",
        "loss/entropy",
        "loss/value",
        "policy/explained_variance",
        "kl/mean",
    ):
        assert all(key in r for r in rows)


def test_run_folder_contents(tmp_path):
    out = tmp_path / "run"
    assert (
        main(["train", SMOKE, "train.iterations=2", "eval.every=1", "--output-dir", str(out), "--seed", "3"])
        == 0
    )
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["seed"] == 3
    assert json.loads((out / "eval.json").read_text())["iteration"] == 2
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {s["iteration"] for s in samples} == {0, 1, 2}
    assert set(samples[0]) == {
        "iteration",
        "prompt",
        "completion",
        "references",
        "reward",
        "reward/char_fraction",
    }
    assert (out / "checkpoints" / "iter_000002" / "policy.safetensors").is_file()
    assert (out / "model" / "config.json").is_file() and (out / "model" / "value_head.safetensors").is_file()
    # the saved model folder is a valid model.name_or_path
    cfg = load_config(
        SMOKE, [f"model.name_or_path={out / 'model'}", "model.random_init=null", "model.tokenizer=null"]
    )
    build(cfg)
    # a second run into the same folder is refused, and nothing is lost
    before = (out / "metrics.jsonl").read_text()
    with pytest.raises(RunDirError, match="--resume"):
        train(load_config(SMOKE), out)
    assert (out / "metrics.jsonl").read_text() == before


def test_same_seed_same_metrics(tmp_path):
    cfg = load_config(SMOKE, ["train.iterations=3", "train.save_final_model=false"])
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [without_time(r) for r in a] == [without_time(r) for r in b]
    other = load_config(SMOKE, ["train.iterations=3", "train.save_final_model=false", "train.seed=1"])
    train(other, tmp_path / "c")
    assert [without_time(r) for r in read_metrics(tmp_path / "c")] != [without_time(r) for r in a]


@pytest.mark.parametrize("model_overrides", [[], T5], ids=["causal", "seq2seq"])
def test_resume_continues_exactly(tmp_path, model_overrides):
    common = ["train.save_final_model=false", "eval.every=0", *model_overrides]
    straight = load_config(SMOKE, ["train.iterations=4", "train.save_every=2", *common])
    train(straight, tmp_path / "straight")
    # stop after 2 iterations, then resume to 4
    train(load_config(SMOKE, ["train.iterations=2", *common]), tmp_path / "resumed")
    train(load_config(SMOKE, ["train.iterations=4", *common]), tmp_path / "resumed", resume=True)
    a = [without_time(r) for r in training_rows(tmp_path / "straight")]
    b = [without_time(r) for r in training_rows(tmp_path / "resumed")]
    assert [r["iteration"] for r in b] == [1, 2, 3, 4]
    assert a == b
    assert json.loads((tmp_path / "straight" / "eval.json").read_text()) == json.loads(
        (tmp_path / "resumed" / "eval.json").read_text()
    )


def test_resume_refuses_a_changed_config(tmp_path):
    train(load_config(SMOKE, ["train.iterations=1", "train.save_final_model=false"]), tmp_path / "run")
    with pytest.raises(RunDirError, match="algorithm"):
        train(
            load_config(SMOKE, ["train.iterations=2", "algorithm.kl_coef=0.3"]),
            tmp_path / "run",
            resume=True,
        )
    with pytest.raises(RunDirError, match="no run"):
        train(load_config(SMOKE), tmp_path / "empty", resume=True)


def test_separate_critic_and_adaptive_kl(tmp_path):
    cfg = load_config(
        SMOKE,
        [
            "train.iterations=2",
            "model.critic=separate",
            "algorithm.kl_target=1.0",
            "train.save_final_model=false",
        ],
    )
    train(cfg, tmp_path / "run")
    rows = training_rows(tmp_path / "run")
    assert rows[0]["kl/coef"] == pytest.approx(0.01)
    # iteration 1 scores the policy against itself: KL 0 < target 1, e = -1 clipped to -.2, and the coefficient
    # goes down: .01 * (1 - .2 * 32 / 10000)  (tests/test_adaptive_kl_resume.py checks every step and a resume)
    assert rows[0]["kl/mean"] == 0.0
    assert rows[1]["kl/coef"] == pytest.approx(0.01 * (1 - 0.2 * 32 / 10000), rel=1e-12)


def test_value_head_starts_at_zero_and_has_its_own_learning_rate():
    cfg = load_config(SMOKE, ["train.value_learning_rate=0.01", "model.critic=separate"])
    c = build(cfg)
    assert torch.count_nonzero(c.policy.value_head.weight) == 0  # V = 0 until the critic learns
    actor, critic = c.optimizer.param_groups
    assert actor["lr"] == cfg.train.learning_rate and critic["lr"] == 0.01
    critic_ids = {id(p) for p in critic["params"]}
    assert {id(p) for p in c.policy.value_head.parameters()} <= critic_ids
    assert {id(p) for p in c.policy.critic_model.parameters()} <= critic_ids
    assert not critic_ids & {id(p) for p in c.policy.model.parameters()}
    n_params = sum(p.numel() for p in c.policy.parameters() if p.requires_grad)
    assert sum(p.numel() for g in c.optimizer.param_groups for p in g["params"]) == n_params
