"""``rl4text compare``: loading, grouping, the t table, the CI table, plots, the CLI and its errors."""

from __future__ import annotations

import json
import math
import sys
import time
import types
from pathlib import Path

import pytest
import yaml

from rl4text import compare as C
from rl4text.cli import main

BASE_CONFIG = {
    "model": {"random_init": {"model_type": "llama", "hidden_size": 32}, "tokenizer": "char"},
    "task": {"name": "toy_letters", "args": {"n_train": 64}},
    "algorithm": {"name": "ppo", "kl_coef": 0.01},
    "rollout": {"batch_size": 8},
    "train": {"iterations": 3, "seed": 0},
    "eval": {"every": 0},
    "tracking": {"print_every": 1, "wandb": {"enabled": False}},
}

# hand-chosen final metrics per (algorithm, seed)
CHRF = {"ppo": [10.0, 12.0, 14.0], "a2c": [20.0, 20.0, 26.0]}
REWARD = {"ppo": [0.5, 0.5, 0.5], "a2c": [0.1, 0.2, 0.3]}


def write_run(
    path: Path,
    algorithm: str = "ppo",
    seed: int = 0,
    chrf: float = 10.0,
    reward: float = 0.5,
    iterations: int = 3,
    rewards: list[float] | None = None,
    tracking: dict | None = None,
) -> Path:
    path.mkdir(parents=True)
    cfg = json.loads(json.dumps(BASE_CONFIG))
    cfg["algorithm"]["name"] = algorithm
    if algorithm == "ppo":
        cfg["algorithm"]["clip_range"] = 0.2  # algorithm-specific keys, as in real configs
    cfg["train"]["seed"] = seed
    if tracking is not None:
        cfg["tracking"] = tracking
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    rewards = rewards or [0.1 * (i + 1) + seed for i in range(iterations)]
    rows = [{"iteration": 0, "eval/chrf": 1.0, "eval/reward": 0.0}]
    for it, r in enumerate(rewards, 1):
        rows.append({"iteration": it, "rollout/reward_mean": r, "kl/mean": 0.01 * it, "loss/policy": 0.0})
    rows.append({"iteration": len(rewards), "final": True, "eval/chrf": chrf, "eval/reward": reward})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    final = {"iteration": len(rewards), "reward": reward, "chrf": chrf, "note": "text is skipped"}
    (path / "eval.json").write_text(json.dumps(final))
    return path


@pytest.fixture
def two_groups(tmp_path: Path) -> list[Path]:
    return [
        write_run(tmp_path / f"{algo}-seed{seed}", algo, seed, CHRF[algo][seed], REWARD[algo][seed])
        for algo in ("ppo", "a2c")
        for seed in range(3)
    ]


# ------------------------------------------------------------------------------------------------- statistics


def test_t_table_known_values():
    assert C.t_critical(1) == 12.706
    assert C.t_critical(2) == 4.303
    assert C.t_critical(10) == 2.228
    assert C.t_critical(30) == 2.042
    assert C.t_critical(120) == 1.980
    assert C.t_critical(10**9) == pytest.approx(1.96, abs=1e-6)
    # between tabulated df: linear in 1/df (t_{0.975,50} = 2.009, t_{0.975,200} = 1.972 in full tables)
    assert C.t_critical(50) == pytest.approx(2.009, abs=2e-3)
    assert C.t_critical(200) == pytest.approx(1.972, abs=1e-3)
    assert 2.000 > C.t_critical(61) > C.t_critical(119) > 1.980
    with pytest.raises(ValueError):
        C.t_critical(0)


def _t_cdf(t: float, df: int, steps: int = 4000) -> float:
    """P(T <= t) by Simpson's rule on the t density (an independent check of the table)."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def pdf(x: float) -> float:
        return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))

    h = t / steps
    total = pdf(0) + pdf(t) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, steps))
    return 0.5 + total * h / 3


@pytest.mark.parametrize("df", sorted(C.T_975))
def test_t_table_matches_the_t_distribution(df):
    # three decimals: the quantile is within 0.0005 of the tabulated value
    t = C.T_975[df]
    assert _t_cdf(t - 0.0006, df) < 0.975 < _t_cdf(t + 0.0006, df)


def test_mean_ci_hand_computed():
    mean, half = C.mean_ci([10, 12, 14])
    assert mean == 12
    assert half == pytest.approx(4.303 * 2 / math.sqrt(3))
    assert round(half, 3) == 4.969
    assert C.mean_ci([3.5]) == (3.5, None)


# ---------------------------------------------------------------------------------------- grouping and table


def test_grouping_ignores_seed_and_tracking(tmp_path):
    paths = [
        write_run(tmp_path / "ppo-seed0", "ppo", 0),
        write_run(tmp_path / "ppo-seed1", "ppo", 1, tracking={"print_every": 0}),
        write_run(tmp_path / "a2c-seed0", "a2c", 0),
    ]
    groups, differing, label_keys = C.group_runs(C.load_runs(paths))
    assert [g.label for g in groups] == ["algorithm.name=ppo", "algorithm.name=a2c"]
    assert [[r.name for r in g.runs] for g in groups] == [["ppo-seed0", "ppo-seed1"], ["a2c-seed0"]]
    assert label_keys == ["algorithm.name"]
    assert set(differing) == {"algorithm.name", "algorithm.clip_range"}


def test_one_group_is_labelled_by_folder_name(tmp_path):
    runs = C.load_runs([write_run(tmp_path / f"ppo-seed{s}", "ppo", s) for s in range(2)])
    groups, _, _ = C.group_runs(runs)
    assert [g.label for g in groups] == ["ppo"]
    single = C.load_runs([tmp_path / "ppo-seed1"])
    assert C.group_runs(single)[0][0].label == "ppo-seed1"


def test_table_numbers(two_groups):
    groups, _, _ = C.group_runs(C.load_runs(two_groups))
    table = C.results_table(groups, ["reward", "chrf"])
    lines = table.splitlines()
    assert lines[0] == "| group | n runs | reward | chrf |"
    # ppo chrf [10, 12, 14]: 12 ± 4.303 * 2 / sqrt(3) = 4.969; reward constant: ± 0
    assert lines[2] == "| algorithm.name=ppo | 3 | 0.500 ± 0.000 | 12.000 ± 4.969 |"
    # a2c chrf [20, 20, 26]: mean 22, s = sqrt(12) = 3.4641, 4.303 * 3.4641 / sqrt(3) = 8.606
    # a2c reward [0.1, 0.2, 0.3]: mean 0.2, s = 0.1, 4.303 * 0.1 / sqrt(3) = 0.248
    assert lines[3] == "| algorithm.name=a2c | 3 | 0.200 ± 0.248 | 22.000 ± 8.606 |"


def test_n1_group_and_missing_metric(tmp_path):
    paths = [write_run(tmp_path / "ppo", "ppo", 0, chrf=7.25), write_run(tmp_path / "a2c", "a2c", 0)]
    (tmp_path / "ppo" / "eval.json").write_text(json.dumps({"iteration": 3, "chrf": 7.25, "bleu": 3.0}))
    groups, _, _ = C.group_runs(C.load_runs(paths))
    table = C.results_table(groups, ["chrf", "bleu"])
    assert "| algorithm.name=ppo | 1 | 7.250 ± n/a | 3.000 ± n/a |" in table
    assert "| algorithm.name=a2c | 1 | 10.000 ± n/a | — |" in table


def test_default_metrics_are_numeric_eval_keys(two_groups):
    runs = C.load_runs(two_groups)
    assert C.select_metrics(runs, None) == ["reward", "chrf"]  # not iteration, not the text field
    assert C.select_metrics(runs, ["eval/chrf"]) == ["chrf"]


# -------------------------------------------------------------------------------------------------- curves


def test_curves_average_runs_of_different_lengths(tmp_path):
    paths = [
        write_run(tmp_path / "ppo-seed0", "ppo", 0, rewards=[1.0, 2.0, 3.0]),
        write_run(tmp_path / "ppo-seed1", "ppo", 1, rewards=[3.0, 4.0]),
        write_run(tmp_path / "a2c-seed0", "a2c", 0, rewards=[0.0, 0.0, 0.0, 0.0]),
    ]
    groups, _, _ = C.group_runs(C.load_runs(paths))
    data = C.curves(groups, "rollout/reward_mean")
    assert list(data) == ["algorithm.name=ppo", "algorithm.name=a2c"]  # one line per group
    ppo = data["algorithm.name=ppo"]
    assert ppo["x"] == [1, 2, 3]
    assert ppo["mean"] == [2.0, 3.0, 3.0]
    assert ppo["n"] == [2, 2, 1]
    # iteration 1: values [1, 3]: s = sqrt(2), half = 12.706 * sqrt(2) / sqrt(2) = 12.706
    assert ppo["hi"][0] - ppo["mean"][0] == pytest.approx(12.706)
    assert ppo["lo"][2] == ppo["hi"][2] == 3.0  # one run: no band
    assert data["algorithm.name=a2c"]["x"] == [1, 2, 3, 4]
    evals = C.curves(groups, "eval/chrf")
    assert evals["algorithm.name=ppo"]["x"] == [0, 2, 3]


def test_compare_writes_markdown_and_pngs(two_groups, tmp_path):
    result = C.compare(two_groups, output=tmp_path / "out" / "cmp")
    names = [p.name for p in result.files]
    assert names == [
        "cmp.md",
        "cmp_rollout_reward_mean.png",
        "cmp_kl_mean.png",
        "cmp_eval_chrf.png",
        "cmp_eval_reward.png",
    ]
    for path in result.files:
        assert path.is_file() and path.stat().st_size > 0
    assert result.files[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "out" / "cmp.md").read_text()
    assert md == result.markdown
    assert "12.000 ± 4.969" in md
    assert "t_{0.975, n-1} · s / √n" in md
    assert "![rollout/reward_mean](cmp_rollout_reward_mean.png)" in md


def test_metric_option_restricts_table_and_eval_plots(two_groups, tmp_path):
    result = C.compare(two_groups, metrics=["chrf"], output=tmp_path / "cmp")
    assert "| group | n runs | chrf |" in result.markdown
    assert [p.name for p in result.files][-1] == "cmp_eval_chrf.png"
    assert not (tmp_path / "cmp_eval_reward.png").exists()


# ----------------------------------------------------------------------------------------------------- CLI


def test_cli_end_to_end(two_groups, tmp_path, capsys):
    out = tmp_path / "res" / "cmp"
    rc = main(["compare", *map(str, two_groups), "--metric", "chrf", "--output", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| algorithm.name=ppo | 3 | 12.000 ± 4.969 |" in printed
    assert "| algorithm.name=a2c | 3 | 22.000 ± 8.606 |" in printed
    assert f"{out}.md" in printed and f"{out}_rollout_reward_mean.png" in printed
    assert (tmp_path / "res" / "cmp_kl_mean.png").stat().st_size > 0


def test_cli_default_output_in_current_folder(two_groups, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", *map(str, two_groups)]) == 0
    assert (tmp_path / "compare.md").is_file()
    assert (tmp_path / "compare_rollout_reward_mean.png").is_file()


def _cli_error(argv, capsys) -> str:
    assert main(["compare", *argv]) == 2
    return capsys.readouterr().err


def test_cli_errors(two_groups, tmp_path, capsys):
    err = _cli_error([], capsys)
    assert "no run folders given" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _cli_error([str(empty)], capsys)
    assert err.startswith("rl4text compare: error:") and "is neither a run folder" in err
    err = _cli_error([str(tmp_path / "missing")], capsys)
    assert "is not a folder" in err
    err = _cli_error([*map(str, two_groups), "--metric", "bleu"], capsys)
    assert "no run has the final metric 'bleu'; available: reward, chrf" in err
    assert not (tmp_path / "compare.md").exists()


# ----------------------------------------------------------------------------------------------------- W&B


def _fake_wandb_folder(tmp_path: Path) -> Path:
    run = tmp_path / "wb" / "wandb" / "offline-run-20250101_000000-abc123"
    run.mkdir(parents=True)
    (run / "run-abc123.wandb").write_bytes(b"")
    return run


def test_wandb_folder_is_converted(tmp_path, two_groups, monkeypatch):
    seen = []

    def read_wandb_run(path):
        seen.append(Path(path))
        cfg = json.loads(json.dumps(BASE_CONFIG))
        cfg["algorithm"]["clip_range"] = 0.2
        cfg["train"]["seed"] = 7
        cfg["_wandb"] = {"value": {"cli_version": "0"}}
        history = [{"_step": i, "_runtime": 1.0, "rollout/reward_mean": 0.5 * i} for i in (1, 2, 3)]
        summary = {"eval/chrf": 16.0, "eval/reward": 0.5, "_step": 3, "rollout/reward_mean": 1.5}
        return {"config": cfg, "history": history, "summary": summary, "tables": {}}

    monkeypatch.setitem(
        sys.modules, "rl4text.wandb_offline", types.SimpleNamespace(read_wandb_run=read_wandb_run)
    )
    run_dir = _fake_wandb_folder(tmp_path)
    for given in (tmp_path / "wb", tmp_path / "wb" / "wandb", run_dir):
        (run,) = C.load_runs([given])
        assert seen[-1] == given
        assert run.name == ("wb" if given != run_dir else run_dir.name)
        assert run.source == "W&B run"
        assert run.final == {"chrf": 16.0, "reward": 0.5}
        assert [r["iteration"] for r in run.rows] == [1, 2, 3]
        assert "_runtime" not in run.rows[0] and "_wandb" not in run.config
    # the W&B run joins the ppo run folders: same config apart from the seed
    groups, _, _ = C.group_runs(C.load_runs([*two_groups, tmp_path / "wb"]))
    assert [len(g.runs) for g in groups] == [4, 3]
    assert groups[0].runs[-1].name == "wb"


def test_wandb_without_tracking_module(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rl4text.wandb_offline", None)  # import fails
    _fake_wandb_folder(tmp_path)
    with pytest.raises(C.CompareError, match=r"needs rl4text\.wandb_offline"):
        C.load_runs([tmp_path / "wb"])


def test_real_wandb_offline_run(tmp_path, monkeypatch, capsys):
    reader = pytest.importorskip("rl4text.wandb_offline")
    if not hasattr(reader, "read_wandb_run"):
        pytest.skip("rl4text.wandb_offline.read_wandb_run not available")
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = json.loads(json.dumps(BASE_CONFIG))
    run = wandb.init(dir=tmp_path, config=cfg, mode="offline", project="rl4text-test")
    for i in range(1, 4):
        run.log({"rollout/reward_mean": 0.1 * i, "kl/mean": 0.01 * i}, step=i)
    run.summary["eval/chrf"] = 12.5
    run.finish()
    # wandb 0.31 returns from finish before its offline log is written (rl4text's tracker waits for it)
    log = next((tmp_path / "wandb").glob("offline-run-*/*.wandb"))
    for _ in range(150):
        if log.stat().st_size > 7:
            break
        time.sleep(0.2)
    time.sleep(0.5)

    out = tmp_path / "cmp"
    assert main(["compare", str(tmp_path), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| chrf |" in printed and "12.500 ± n/a" in printed
    data = C.curves(C.group_runs(C.load_runs([tmp_path]))[0], "rollout/reward_mean")
    (curve,) = data.values()
    assert curve["x"] == [1, 2, 3]
    assert curve["mean"] == pytest.approx([0.1, 0.2, 0.3])
    assert (tmp_path / "cmp_rollout_reward_mean.png").stat().st_size > 0


def test_cli_run_folders_may_follow_options(two_groups, tmp_path):
    from rl4text.cli import main

    assert main(["compare", "--output", str(tmp_path / "cmp"), *map(str, two_groups)]) == 0
    assert "algorithm.name=ppo" in (tmp_path / "cmp.md").read_text()
