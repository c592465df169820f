"""The adaptive KL controller inside a real (tiny) run: ``kl/coef`` moves in the direction and by the amount that
the logged KL dictates, and a run resumed from a checkpoint continues with the moved coefficient, exactly as an
uninterrupted run does."""

import itertools
import json

import pytest

from rl4text.config import load_config
from rl4text.train import train

SMOKE = "configs/smoke.yaml"
KL_COEF, HORIZON, BATCH = 0.01, 100, 32  # n_steps / horizon = 32 / 100 = .32 per iteration
COMMON = [
    f"algorithm.kl_coef={KL_COEF}",
    f"algorithm.kl_horizon={HORIZON}",
    f"rollout.batch_size={BATCH}",
    "eval.every=0",
    "train.save_final_model=false",
    "tracking.print_every=0",
    "tracking.progress=none",
]


def training_rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "kl/coef" in r]


def without_time(row):
    return {k: v for k, v in row.items() if not k.startswith("time/")}


def next_coef(coef: float, kl: float, target: float) -> float:
    """Ziegler et al. 2019, eq. 2: e = clip(KL / target - 1, -.2, .2); beta <- beta (1 + e n / horizon)."""
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return coef * (1.0 + error * BATCH / HORIZON)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-iteration probe and a 4-iteration run whose target sits 10% below the probe's iteration-2 KL.

    Iteration 1 scores the policy against itself (KL = 0, so e = -1, clipped to -.2, whatever the target) and
    its update sees no penalty; so iterations 1-2 are the same for every target and the probe's KL at
    iteration 2 is the real run's too. With target = KL_2 / 1.1, e at iteration 2 is +.1, inside the clip.
    """
    root = tmp_path_factory.mktemp("adaptive_kl")
    train(load_config(SMOKE, ["train.iterations=2", "algorithm.kl_target=0.01", *COMMON]), root / "probe")
    probe = training_rows(root / "probe")
    target = probe[1]["kl/mean"] / 1.1
    overrides = [f"algorithm.kl_target={target!r}", *COMMON]
    train(load_config(SMOKE, ["train.iterations=4", "train.save_every=2", *overrides]), root / "straight")
    return {"root": root, "probe": probe, "target": target, "overrides": overrides}


def test_kl_coef_follows_the_logged_kl(runs):
    probe, target = runs["probe"], runs["target"]
    rows = training_rows(runs["root"] / "straight")
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    # iteration 1: policy == reference, KL 0 < target -> the coefficient goes down by the clipped 20%:
    #   .01 * (1 - .2 * .32) = .00936
    # (KL ~1e-7, not exactly 0: the policy's log-probs come from the KV-cached sampling loop, the reference's
    # from a full forward pass; rollout.score_from_generation, equal to 1e-5)
    assert abs(rows[0]["kl/mean"]) < 1e-5 and rows[0]["kl/coef"] == KL_COEF
    assert rows[1]["kl/coef"] == pytest.approx(KL_COEF * (1 - 0.2 * 0.32), rel=1e-12)
    assert probe[1]["kl/coef"] == rows[1]["kl/coef"] and probe[1]["kl/mean"] == rows[1]["kl/mean"]
    # iteration 2: KL = 1.1 * target -> e = +.1 (unclipped): up by 3.2%: .00936 * 1.032
    assert rows[1]["kl/mean"] > 0
    assert rows[2]["kl/coef"] == pytest.approx(KL_COEF * (1 - 0.2 * 0.32) * (1 + 0.1 * 0.32), rel=1e-9)
    # every step: the next coefficient is the controller's update on this step's logged KL (kl/mean, nats
    # per sequence), in the direction of KL - target
    for row, nxt in itertools.pairwise(rows):
        assert nxt["kl/coef"] == pytest.approx(next_coef(row["kl/coef"], row["kl/mean"], target), rel=1e-12)
        assert (nxt["kl/coef"] > row["kl/coef"]) == (row["kl/mean"] > target)
    # the probe's target .01 is far below its iteration-2 KL: the clipped increase, +20% * .32
    assert probe[1]["kl/mean"] > 0.012


def test_resume_restores_the_adaptive_coefficient(runs):
    root, overrides = runs["root"], runs["overrides"]
    train(load_config(SMOKE, ["train.iterations=2", *overrides]), root / "resumed")
    train(load_config(SMOKE, ["train.iterations=4", *overrides]), root / "resumed", resume=True)
    straight = [without_time(r) for r in training_rows(root / "straight")]
    resumed = [without_time(r) for r in training_rows(root / "resumed")]
    assert [r["iteration"] for r in resumed] == [1, 2, 3, 4]
    # the coefficient after the resume is the moved one (not the configured .01) ...
    assert resumed[2]["kl/coef"] == straight[2]["kl/coef"] != KL_COEF
    # ... and the whole run is the uninterrupted one, row for row
    assert resumed == straight
