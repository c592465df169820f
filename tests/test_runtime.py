"""The run runtime shared by train, sft and rm train: nothing written is lost (issue 11, section 3) and every
recipe resumes exactly and lands in W&B (issue 12).

NaN rewards stop the run naming the component and iteration; ``--overwrite`` keeps the old run until the new
one has started; ``--resume`` cuts the logs back to the checkpoint (also after a SIGKILL before the first
checkpoint or during the final save) and is a no-op on a finished run; ``model/`` is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rl4text.cli import main
from rl4text.config import ConfigError, load_config
from rl4text.runtime import (
    Checkpointer,
    IterationEnd,
    NonFiniteError,
    RunFolder,
    atomic_folder,
    check_finite_values,
)
from rl4text.train import train
from tests import nan_reward

ROOT = Path(__file__).resolve().parent.parent
SMOKE = str(ROOT / "configs" / "smoke.yaml")
SFT_SMOKE = str(ROOT / "configs" / "sft_smoke.yaml")
QUIET = ["tracking.progress=none", "tracking.wandb.enabled=false"]
SPEED_KEYS = ("tokens_per_s", "elapsed_s")


def rows(run_dir: Path, name: str = "metrics.jsonl") -> list[dict]:
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]


def comparable(run_dir: Path, name: str = "metrics.jsonl") -> list[dict]:
    return [
        {k: v for k, v in r.items() if not k.startswith("time/") and k not in SPEED_KEYS}
        for r in rows(run_dir, name)
    ]


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def all_finite(checkpoint: Path) -> bool:
    from safetensors.torch import load_file

    files = list(checkpoint.glob("*.safetensors"))
    return bool(files) and all(torch.isfinite(t).all() for f in files for t in load_file(f).values())


# ---------------------------------------------------------------------------------------------- NaN


NAN_RUN = [
    "reward.components.0.name=tests.nan_reward:nan_reward",
    "eval.at_start=false",  # one reward call per iteration until the final evaluation
    "train.save_every=1",
    "train.keep_checkpoints=5",
    "train.save_final_model=false",
    *QUIET,
]


def test_nan_reward_stops_naming_component_and_iteration_and_resume_works(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(nan_reward, "CALLS", [0])
    monkeypatch.setattr(nan_reward, "NAN_AT_CALL", [3])  # iteration 3
    args = ["train", SMOKE, "--output-dir", str(out), "train.iterations=5", *NAN_RUN]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "reward component 'nan_reward'" in err and "iteration 3" in err
    assert "Traceback" not in err and "nan" in err
    assert [r["iteration"] for r in rows(out)] == [1, 2]  # the NaN iteration was never logged
    checkpoints = sorted(p.name for p in (out / "checkpoints").glob("iter_*"))
    assert checkpoints == ["iter_000001", "iter_000002"]
    assert all(all_finite(out / "checkpoints" / c) for c in checkpoints)
    # the component is fixed: resume continues from iteration 2 and finishes
    monkeypatch.setattr(nan_reward, "NAN_AT_CALL", [None])
    assert main([*args, "--resume"]) == 0
    assert [r["iteration"] for r in rows(out)] == [1, 2, 3, 4, 5, 5]
    assert all(v == v for r in rows(out) for v in r.values() if isinstance(v, float))  # no NaN anywhere


def test_non_finite_guards_name_the_culprit(tmp_path):
    with pytest.raises(
        NonFiniteError, match=r"reward component 'bleu' returned inf for sample 1 at iteration 7"
    ):
        check_finite_values(
            {"chrf": [0.5, 0.1], "bleu": [0.2, float("inf")]}, what="reward component", where="iteration 7"
        )
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"weight weight holds NaN/inf values at iteration 4; not saved"):
        Checkpointer(tmp_path / "ckpt").save(4, model, torch.optim.SGD(model.parameters(), lr=0.1), {})
    assert not (tmp_path / "ckpt").exists() or not list((tmp_path / "ckpt").glob("iter_*"))


# ---------------------------------------------------------------------------------------------- overwrite


def test_overwrite_keeps_the_old_run_when_the_new_one_cannot_start(tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(load_config(SMOKE, ["train.iterations=1", "train.save_final_model=false", *QUIET]), out)
    before = tree_digest(out)
    # fails while building (an unknown architecture), before the folder is touched
    broken = load_config(SMOKE, ["model.random_init.model_type=no_such_model", *QUIET])
    with pytest.raises(ValueError, match="no_such_model"):
        train(broken, out, overwrite=True)
    assert tree_digest(out) == before
    # fails after the folder was replaced but before the new run logged anything: the old run comes back
    monkeypatch.setattr(nan_reward, "CALLS", [0])
    monkeypatch.setattr(nan_reward, "NAN_AT_CALL", [1])
    with pytest.raises(NonFiniteError):
        train(load_config(SMOKE, ["train.iterations=2", *NAN_RUN]), out, overwrite=True)
    assert tree_digest(out) == before
    assert not list(tmp_path.glob(".run.*"))
    # a run that starts replaces the old one for good
    train(
        load_config(SMOKE, ["train.iterations=2", "train.save_final_model=false", *QUIET]),
        out,
        overwrite=True,
    )
    assert [r["iteration"] for r in rows(out)] == [0, 1, 2, 2]
    assert not list(tmp_path.glob(".run.*"))


def test_run_folder_refuses_before_touching_anything(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(Exception, match="already holds a run"):
        RunFolder(tmp_path / "old", {"a": 1}).check()
    with pytest.raises(Exception, match="holds no run"):
        RunFolder(tmp_path / "none", {"a": 1}, resume=True).check()
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("bad", ["train.keep_checkpoints=0", "train.save_every=-1"])
def test_checkpoint_settings_are_checked_with_the_config(bad):
    with pytest.raises(ConfigError, match=bad.split("=")[0].split(".")[1]):
        load_config(SMOKE, [bad])


def test_rloo_batch_rule_is_checked_before_any_work(tmp_path):
    cfg = load_config(SMOKE, ["algorithm.name=rloo", "algorithm.k=3", *QUIET])
    with pytest.raises(ConfigError, match="multiple of the rloo algorithm's samples per prompt"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------- resume


def run_and_kill(mode: str, out: Path, extra: list[str], tmp_path: Path) -> None:
    """Start ``rl4text train`` in a subprocess, SIGKILL it where ``mode`` hangs (tests/kill_driver.py)."""
    flag = tmp_path / f"{mode}.flag"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [
        sys.executable,
        "-m",
        "tests.kill_driver",
        mode,
        str(flag),
        "train",
        SMOKE,
        "--output-dir",
        str(out),
        *extra,
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not flag.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run never reached the point to kill it at"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


RESUME_RUN = ["eval.every=2", "train.save_every=2", *QUIET]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    train(load_config(SMOKE, ["train.iterations=4", *RESUME_RUN]), out)
    return out


def test_kill_during_the_final_model_save_then_resume(tmp_path, straight, capsys):
    out = tmp_path / "run"
    run_and_kill("model", out, ["train.iterations=4", *RESUME_RUN], tmp_path)
    # model/ is written under a temporary name: a killed save never looks finished
    assert not (out / "model").exists() and (out / ".model.tmp" / "config.json").is_file()
    assert (
        main(["train", SMOKE, "--output-dir", str(out), "--resume", "train.iterations=4", *RESUME_RUN]) == 0
    )
    assert comparable(out) == comparable(straight)  # one final row, no duplicates
    assert comparable(out, "samples.jsonl") == comparable(straight, "samples.jsonl")
    assert json.loads((out / "eval.json").read_text()) == json.loads((straight / "eval.json").read_text())
    assert (out / "model" / "config.json").is_file() and not (out / ".model.tmp").exists()
    # resuming a finished run does nothing, and says so
    capsys.readouterr()
    before = tree_digest(out)
    assert (
        main(["train", SMOKE, "--output-dir", str(out), "--resume", "train.iterations=4", *RESUME_RUN]) == 0
    )
    assert "finished run" in capsys.readouterr().out
    assert tree_digest(out) == before


def test_kill_during_the_final_checkpoint_then_resume(tmp_path, straight):
    out = tmp_path / "run"
    run_and_kill("final-checkpoint", out, ["train.iterations=4", *RESUME_RUN], tmp_path)
    assert sorted(p.name for p in (out / "checkpoints").glob("iter_*")) == ["iter_000002"]
    assert [r["iteration"] for r in rows(out)] == [0, 1, 2, 3, 4]  # logged up to 4, checkpoint at 2
    train(load_config(SMOKE, ["train.iterations=4", *RESUME_RUN]), out, resume=True)
    assert comparable(out) == comparable(straight)
    assert comparable(out, "samples.jsonl") == comparable(straight, "samples.jsonl")


def test_kill_before_the_first_checkpoint_then_resume(tmp_path, straight):
    out = tmp_path / "run"
    extra = ["eval.every=2", "train.save_every=0", *QUIET]
    run_and_kill("iteration-2", out, ["train.iterations=4", *extra], tmp_path)
    assert not (out / "checkpoints").exists() and [r["iteration"] for r in rows(out)] == [0, 1, 2]
    train(load_config(SMOKE, ["train.iterations=4", *extra]), out, resume=True)
    assert [r["iteration"] for r in rows(out)] == [0, 1, 2, 3, 4, 4]
    assert comparable(out) == comparable(straight)  # started again from 0, without the rows of the killed run


def test_atomic_folder_replaces_only_when_complete(tmp_path):
    final = tmp_path / "model"
    with atomic_folder(final) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(RuntimeError), atomic_folder(final) as tmp:
        (tmp / "a.txt").write_text("2")
        raise RuntimeError("killed")
    assert (final / "a.txt").read_text() == "1"


def test_a_callback_can_stop_the_run(tmp_path):
    seen: list[IterationEnd] = []

    def stop_after_two(event: IterationEnd):
        seen.append(event)
        return event.iteration < 2

    cfg = load_config(
        SMOKE, ["train.iterations=5", "train.save_final_model=false", "eval.at_start=false", *QUIET]
    )
    final = train(cfg, tmp_path / "run", callbacks=[stop_after_two])
    assert (
        [e.iteration for e in seen] == [1, 2] and seen[0].total == 5 and "rollout/reward_mean" in seen[0].row
    )
    assert [r["iteration"] for r in rows(tmp_path / "run")] == [1, 2, 2]
    assert json.loads((tmp_path / "run" / "eval.json").read_text()) == {"iteration": 2, **final}
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("iter_*")) == ["iter_000002"]


# ---------------------------------------------------------------------------------------------- sft and rm


class Interrupt(Exception):
    pass


def interrupt_at(monkeypatch, module, name: str, step_of, at: int) -> None:
    """Make ``module.name`` raise once the run reaches step ``at`` (after that step's work)."""
    original = getattr(module, name)

    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        if step_of(*args) == at:
            raise Interrupt(f"interrupted at step {at}")
        return result

    monkeypatch.setattr(module, name, wrapped)


def wandb_runs(folder: Path) -> list[Path]:
    return sorted((folder / "wandb").glob("offline-run-*"))


@pytest.fixture
def wandb_offline(monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_sft_resumes_exactly_and_lands_in_wandb(tmp_path, monkeypatch, wandb_offline):
    import rl4text.sft as sft_mod

    overrides = [
        "sft.max_steps=12",
        "sft.log_every=3",
        "sft.save_every=4",
        "sft.eval_every=6",
        "tracking.progress=none",
    ]
    cfg = load_config(SFT_SMOKE, overrides)
    sft_mod.sft(cfg, tmp_path / "straight")
    with monkeypatch.context() as m:
        interrupt_at(m, sft_mod, "log_step", lambda run, *_: run.step, 7)
        with pytest.raises(Interrupt):
            sft_mod.sft(cfg, tmp_path / "resumed")
    assert [r["step"] for r in rows(tmp_path / "resumed")] == [0, 3, 6]
    assert main(["sft", SFT_SMOKE, *overrides, "--output-dir", str(tmp_path / "resumed"), "--resume"]) == 0
    assert comparable(tmp_path / "resumed") == comparable(tmp_path / "straight")
    assert (tmp_path / "resumed" / "eval.json").read_text() == (
        tmp_path / "straight" / "eval.json"
    ).read_text()
    assert len(wandb_runs(tmp_path / "straight")) == 1 and len(wandb_runs(tmp_path / "resumed")) == 2


def test_rm_train_resumes_exactly_and_lands_in_wandb(tmp_path, monkeypatch, wandb_offline):
    import rl4text.rm.train as rm_train
    from rl4text.rm.config import load_rm_config
    from rl4text.rm.toy import vowel_ratings

    ratings = tmp_path / "ratings.jsonl"
    ratings.write_text("".join(json.dumps(r) + "\n" for r in vowel_ratings(n_prompts=60)))
    overrides = [
        f"data.path={ratings}",
        "train.epochs=2",
        "train.log_every=2",
        "train.save_every=4",
        "tracking.progress=none",
    ]
    cfg = load_rm_config(str(ROOT / "configs" / "rm_smoke.yaml"), overrides)
    rm_train.train_rm(cfg, tmp_path / "straight", quiet=True)
    steps = [0]

    def count(*_):
        steps[0] += 1
        return steps[0]

    with monkeypatch.context() as m:
        interrupt_at(m, rm_train, "_step", count, 6)
        with pytest.raises(Interrupt):
            rm_train.train_rm(cfg, tmp_path / "resumed", quiet=True)
    assert not (tmp_path / "resumed" / "eval.json").exists()
    args = ["rm", "train", str(ROOT / "configs" / "rm_smoke.yaml"), *overrides]
    assert main([*args, "--output-dir", str(tmp_path / "resumed"), "--resume"]) == 0
    assert comparable(tmp_path / "resumed") == comparable(tmp_path / "straight")
    held = [json.loads((tmp_path / d / "eval.json").read_text())["held_out"] for d in ("straight", "resumed")]
    assert held[0] == held[1]
    assert len(wandb_runs(tmp_path / "straight")) == 1 and len(wandb_runs(tmp_path / "resumed")) == 2
    # a finished RM folder: --resume does nothing
    before = tree_digest(tmp_path / "resumed")
    assert main([*args, "--output-dir", str(tmp_path / "resumed"), "--resume"]) == 0
    assert tree_digest(tmp_path / "resumed") == before
