"""W&B (offline, no network) and TensorBoard trackers: what is logged reads back exactly."""

import json
import time
import warnings

import numpy as np
import pytest

from rl4text.config import load_config
from rl4text.tracking import (
    REFERENCE_SEPARATOR,
    SAMPLES_KEY,
    TensorBoardTracker,
    WandbTracker,
    make_trackers,
    numeric_items,
    resolve_wandb_mode,
)
from rl4text.wandb_offline import read_wandb_run

SMOKE = "configs/smoke.yaml"


@pytest.fixture
def wandb_offline(monkeypatch, tmp_path):
    """W&B in offline mode with every file it writes under tmp_path and an unreachable server address."""
    home = tmp_path / "wandb-home"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # any network attempt fails at once, locally
    for var, sub in [
        ("WANDB_DIR", "dir"),
        ("WANDB_DATA_DIR", "data"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_ARTIFACT_DIR", "artifacts"),
    ]:
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("NETRC", str(home / "no-netrc"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    import wandb

    wandb.teardown()  # settings are read once per process: start from this environment
    yield
    wandb.teardown()


def fake_run_rows(iterations=3):
    """metrics.jsonl-like rows: eval at 0, training rows (eval every 2), the final row; samples per eval."""
    rng = np.random.default_rng(0)
    rows = [{"iteration": 0, "eval/reward": 0.2, "eval/reward/char_fraction": 0.2}]
    for it in range(1, iterations + 1):
        row = {
            "iteration": it,
            "rollout/reward_mean": float(rng.random()),
            "reward/char_fraction": float(rng.random()),
            "kl/mean": float(rng.normal()),
            "loss/policy": float(rng.normal()),
            "policy/approx_kl": float(rng.random()) * 1e-3,
            "ppo/epochs": 4,
            "time/iteration_s": float(rng.random()),
        }
        if it == 2:
            row["eval/reward"] = 0.5
        rows.append(row)
    rows.append({"iteration": iterations, "final": True, "eval/reward": 0.75, "eval/chrf": 12.5})
    samples = {
        it: [
            {
                "iteration": it,
                "prompt": f"letters: q{i}",
                "completion": f"aei {it}{i}",
                "references": ["aeiou q", f"second {i}"],
                "reward": 0.25 * i,
                "reward/char_fraction": 0.25 * i,
            }
            for i in range(3)
        ]
        for it in (0, 2, iterations)
    }
    return rows, samples


def drive(trackers, rows, samples, final, run_dir):
    """What the training loop does: samples of an evaluation, then the metrics row of that iteration."""
    for row in rows:
        it = row["iteration"]
        if it in samples and not row.get("final"):
            for t in trackers:
                t.log_samples(samples[it], step=it)
        for t in trackers:
            t.log(row, step=it)
    for t in trackers:
        t.finish(final, run_dir)


def expected_history(rows):
    """metrics.jsonl rows merged per iteration (the final row shares the last iteration's step)."""
    by_step = {}
    for row in rows:
        by_step.setdefault(row["iteration"], {}).update(numeric_items(row))
    return by_step


def expected_table(samples_rows):
    return [
        {
            "_step": r["iteration"],
            "prompt": r["prompt"],
            "completion": r["completion"],
            "references": REFERENCE_SEPARATOR.join(r["references"]),
            "reward": r["reward"],
            **{k: v for k, v in r.items() if k.startswith("reward/")},
        }
        for r in samples_rows
    ]


def history_by_step(run):
    return {
        h["_step"]: {k: v for k, v in h.items() if k not in ("_step", SAMPLES_KEY)} for h in run["history"]
    }


def test_wandb_offline_and_tensorboard_read_back(tmp_path, wandb_offline):
    cfg = load_config(SMOKE, ["tracking.tensorboard=true", "tracking.wandb.log_model=true"])
    run_dir = tmp_path / "run"
    trackers = make_trackers(cfg, run_dir, resume=False)
    assert [type(t) for t in trackers] == [WandbTracker, TensorBoardTracker]
    rows, samples = fake_run_rows()
    final = {"reward": 0.75, "chrf": 12.5}
    (run_dir / "model").mkdir()
    (run_dir / "model" / "config.json").write_text("{}")
    (run_dir / "eval.json").write_text(json.dumps({"iteration": 3, **final}))
    drive(trackers, rows, samples, final, run_dir)

    run = read_wandb_run(run_dir)
    assert history_by_step(run) == expected_history(rows)
    assert [h["_step"] for h in run["history"]] == [0, 1, 2, 3]
    assert run["tables"][SAMPLES_KEY] == expected_table([r for it in sorted(samples) for r in samples[it]])
    assert run["summary"]["eval/reward"] == 0.75 and run["summary"]["eval/chrf"] == 12.5
    assert run["config"] == json.loads(json.dumps(cfg.to_dict()))
    assert run["config"]["algorithm"]["name"] == "ppo"
    info = run["run"]
    assert info["id"] == (run_dir / "wandb_run_id").read_text().strip()
    assert info["name"] == "ppo-toy_letters-random-llama-seed0"
    assert info["group"] == "toy_letters" and info["project"] == "rl4text"
    assert set(info["tags"]) == {"ppo", "toy_letters", "random-llama", "seed0"}
    assert info["exit_code"] == 0
    (model,) = [a for a in info["artifacts"] if a["type"] == "model"]
    assert sorted(model["files"]) == ["eval.json", "model/config.json"]
    # the offline-run folder itself reads the same
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    assert read_wandb_run(offline)["history"] == run["history"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    for step, values in expected_history(rows).items():
        for key, value in values.items():
            logged = {e.step: e.value for e in acc.Scalars(key)}
            assert logged[step] == float(np.float32(value)), (key, step)
    assert any(tag.startswith(SAMPLES_KEY) for tag in acc.Tags()["tensors"])


def test_disabled_gives_no_wandb_tracker(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert make_trackers(load_config(SMOKE, ["tracking.wandb.enabled=false"]), tmp_path, False) == []
    assert make_trackers(load_config(SMOKE, ["tracking.wandb.mode=disabled"]), tmp_path, False) == []
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert make_trackers(load_config(SMOKE, ["tracking.wandb.mode=offline"]), tmp_path, False) == []
    assert not (tmp_path / "wandb").exists()


def test_auto_mode_is_online_only_with_an_api_key(tmp_path, monkeypatch):
    cfg = load_config(SMOKE)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert resolve_wandb_mode(cfg) == "offline"
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "x" * 40 + "\n")
    assert resolve_wandb_mode(cfg) == "online"
    (tmp_path / "netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode(cfg) == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_wandb_mode(cfg) == "offline"


def test_resume_continues_the_same_wandb_run(tmp_path, wandb_offline):
    cfg = load_config(SMOKE)
    run_dir = tmp_path / "run"
    rows = [{"iteration": it, "rollout/reward_mean": 0.1 * it} for it in (1, 2, 3)]
    (first,) = make_trackers(cfg, run_dir, resume=False)
    drive([first], rows, {}, None, run_dir)  # the run died after iteration 3 (checkpoint at 1)
    run_id = first.run.id
    assert read_wandb_run(run_dir)["run"]["exit_code"] == 1
    time.sleep(1.0)  # W&B names session folders by the second: a resume within the same second reuses it

    (second,) = make_trackers(cfg, run_dir, resume=True)
    assert second.run.id == run_id
    resumed = [{"iteration": it, "rollout/reward_mean": 1.0 + it} for it in (2, 3, 4)]
    drive([second], resumed, {}, {"reward": 1.0}, run_dir)
    run = read_wandb_run(run_dir)
    assert len(list((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))) == 2
    assert history_by_step(run) == {1: {"rollout/reward_mean": 0.1}, **expected_history(resumed)}
    assert run["run"]["exit_code"] == 0 and run["summary"]["eval/reward"] == 1.0

    (fresh,) = make_trackers(cfg, tmp_path / "other", resume=False)
    assert fresh.run.id != run_id
    fresh.finish({}, tmp_path / "other")


def test_wandb_failures_warn_and_never_stop_training(tmp_path, wandb_offline, monkeypatch):
    import wandb

    cfg = load_config(SMOKE, ["tracking.tensorboard=true"])

    def broken_init(*args, **kwargs):
        raise wandb.errors.CommError("no route to W&B")

    with monkeypatch.context() as m:
        m.setattr(wandb, "init", broken_init)
        with pytest.warns(RuntimeWarning, match="W&B could not start.*no route"):
            trackers = make_trackers(cfg, tmp_path / "a", resume=False)
    assert [type(t) for t in trackers] == [TensorBoardTracker]
    trackers[0].finish(None, tmp_path / "a")

    (tracker,) = make_trackers(load_config(SMOKE), tmp_path / "b", resume=False)

    def broken_log(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tracker.run, "log", broken_log)
    with pytest.warns(RuntimeWarning, match="W&B log failed.*disk full"):
        tracker.log({"iteration": 1, "x": 1.0}, step=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # later calls are quiet no-ops
        tracker.log({"iteration": 2, "x": 1.0}, step=2)
        tracker.log_samples([{"prompt": "p", "completion": "c", "references": [], "reward": 0.0}], step=2)
    tracker.finish({"reward": 0.0}, tmp_path / "b")


def test_training_run_lands_in_wandb_offline(tmp_path, wandb_offline):
    from rl4text.train import train

    cfg = load_config(SMOKE, ["train.iterations=3", "eval.every=1", "train.save_final_model=false"])
    run_dir = tmp_path / "run"
    train(cfg, run_dir)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    run = read_wandb_run(run_dir)
    assert history_by_step(run) == expected_history(metrics)
    assert run["tables"][SAMPLES_KEY] == expected_table(samples)
    final = json.loads((run_dir / "eval.json").read_text())
    assert all(run["summary"][f"eval/{k}"] == v for k, v in final.items() if k != "iteration")
    assert run["config"]["algorithm"]["name"] == "ppo" and run["run"]["exit_code"] == 0
