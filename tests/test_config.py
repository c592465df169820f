"""Config: presets + dotted overrides; unknown keys and wrong types fail before any work, naming key and file."""

import pytest

from rl4text.algorithms.ppo import PPOConfig
from rl4text.cli import main
from rl4text.config import ConfigError, apply_overrides, config_from_dict, load_config

SMOKE = "configs/smoke.yaml"


def test_smoke_preset_loads():
    cfg = load_config(SMOKE)
    assert cfg.algorithm.name == "ppo"
    assert isinstance(cfg.algorithm.params, PPOConfig)
    assert cfg.model.random_init["model_type"] == "llama"
    assert cfg.reward.components[0].name == "char_fraction"


def test_overrides():
    cfg = load_config(
        SMOKE,
        [
            "train.iterations=3",
            "algorithm.clip_range=0.1",
            "reward.components.0.weight=2",
            "eval.metrics=[bleu]",
        ],
    )
    assert cfg.train.iterations == 3
    assert cfg.algorithm.params.clip_range == 0.1
    assert cfg.reward.components[0].weight == 2.0
    assert cfg.eval.metrics == ["bleu"]


def test_exponent_without_a_dot_is_a_number():
    # PyYAML (YAML 1.1) reads 5e-6 as a string; a float field accepts it
    cfg = load_config(SMOKE, ["train.learning_rate=5e-6", "algorithm.kl_coef=1E-3"])
    assert cfg.train.learning_rate == 5e-6 and cfg.algorithm.params.kl_coef == 1e-3


def test_unknown_key_names_file_key_and_valid_keys():
    with pytest.raises(ConfigError) as err:
        load_config(SMOKE, ["train.learning_rte=0.1"])
    msg = str(err.value)
    assert "configs/smoke.yaml" in msg and "'train.learning_rte'" in msg
    assert "Did you mean 'learning_rate'?" in msg and "iterations" in msg


def test_unknown_algorithm_key_checked_against_its_config():
    with pytest.raises(ConfigError, match="Did you mean 'clip_range'"):
        load_config(SMOKE, ["algorithm.clip_rnge=0.1"])


def test_unknown_section():
    with pytest.raises(ConfigError, match=r"unknown key 'trian'.*Did you mean 'train'"):
        config_from_dict(
            {"trian": {}, "model": {"random_init": {"model_type": "llama"}, "tokenizer": "char"}}
        )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.iterations=many", "train.iterations must be an integer"),
        ("rollout.temperature=hot", "rollout.temperature must be a number"),
        ("model.critic=both", "model.critic must be one of"),
        ("eval.metrics=chrf", "eval.metrics must be a list"),
        ("rollout.batch_size=0", "rollout.batch_size must be positive"),
        ("algorithm.kl_estimator=k7", "kl_estimator must be k1, k2 or k3"),
        ("algorithm.name=ppp", "Did you mean 'ppo'"),
        ("reward.components.3.weight=1", "not an index below 1"),
        ("justakey", "dotted.key=value"),
    ],
)
def test_bad_values(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(SMOKE, [override])


def test_model_needs_exactly_one_source():
    with pytest.raises(ConfigError, match=r"exactly one of model\.name_or_path and model\.random_init"):
        config_from_dict({})


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("configs/nope.yaml")


def test_to_dict_round_trip():
    cfg = load_config(SMOKE, ["algorithm.n_epochs=2"])
    again = config_from_dict(cfg.to_dict())
    assert again == cfg


def test_apply_overrides_does_not_mutate():
    data = {"train": {"iterations": 1}}
    assert apply_overrides(data, ["train.iterations=2"])["train"]["iterations"] == 2
    assert data["train"]["iterations"] == 1


def test_cli_reports_config_errors(capsys, tmp_path):
    assert main(["train", SMOKE, "train.itrations=1", "--output-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'train.itrations'" in err and "Did you mean 'iterations'" in err
    assert not (tmp_path / "run").exists()  # failed before any work


def test_cli_reports_unknown_component_names_with_their_key(capsys, tmp_path):
    assert main(["train", SMOKE, "reward.components.0.name=chfr", "--output-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "configs/smoke.yaml: reward.components[0].name: unknown reward 'chfr'" in err
    assert "Did you mean 'chrf'?" in err
    assert main(["train", SMOKE, "eval.metrics=[bleu, rouj]", "--output-dir", str(tmp_path / "run")]) == 2
    assert "eval.metrics[1]: unknown metric 'rouj'" in capsys.readouterr().err


def test_cli_overrides_may_follow_options(tmp_path):
    out = tmp_path / "run"
    argv = [
        "train",
        SMOKE,
        "--output-dir",
        str(out),
        "train.iterations=1",
        "--seed",
        "2",
        "eval.at_start=false",
    ]
    assert main([*argv, "train.save_final_model=false"]) == 0
    saved = (out / "config.yaml").read_text()
    assert "iterations: 1" in saved and "seed: 2" in saved and "at_start: false" in saved
    with pytest.raises(SystemExit):
        main(["train", SMOKE, "--output-dir", str(tmp_path / "x"), "--no-such-flag"])
