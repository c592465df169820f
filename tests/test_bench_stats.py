"""``rl4text bench`` results from a benchmark folder written by hand: paired tests against the starting model on the
same items, the combined interval and its verdict, the fallbacks (old predictions, other items, a score that does
not match), the reward-hacking guards, sample outputs and relative paths."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rl4text.bench import BenchError, load_bench, write_results
from rl4text.bench_stats import paired_verdict, summarize
from rl4text.metrics import build_metrics

SMOKE = Path(__file__).parent.parent / "configs" / "smoke.yaml"
PROMPTS = [f"translate: {w}" for w in ("eins", "zwei", "drei", "vier", "fünf")]
REFS = [["one"], ["two"], ["three"], ["four", "4"], ["five"]]
START_REWARD = [0.0, 1.0, 0.0, 5.0, 2.0]
START_OUT = ["eins", "zwo", "drei", "vier", "fünf"]  # copies the source


def _write(folder: Path, completions, rewards, *, prompts=PROMPTS, items=True, chrf=None) -> None:
    """eval.json and predictions.jsonl as ``rl4text eval`` writes them (``items=False``: the format before
    per-item values were stored)."""
    folder.mkdir(parents=True)
    lengths = [len(c.split()) for c in completions]
    rows = []
    for p, c, r, rew, n in zip(prompts, completions, REFS, rewards, lengths):
        row = {"prompt": p, "completion": c, "references": r, "reward": rew}
        if items:
            row["item"] = {"reward": rew, "response_length": n, "eos_rate": 1.0}
        rows.append(row)
    score = build_metrics(["chrf"])["chrf"].compute(completions, REFS).corpus["chrf"]
    metrics = {
        "reward": sum(rewards) / len(rewards),
        "chrf": score if chrf is None else chrf,
        "response_length": sum(lengths) / len(lengths),
        "eos_rate": 1.0,
    }
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    info = {"split": "test", "max_samples": None, "metrics": metrics}
    (folder / "eval.json").write_text(json.dumps(info))


@pytest.fixture
def bench(tmp_path):
    path = tmp_path / "bench.yaml"
    algorithms = {label: ["algorithm.name=ppo"] for label in ("up", "old", "moved", "off")}
    path.write_text(json.dumps({"base_config": str(SMOKE), "algorithms": algorithms, "seeds": [0, 1, 2]}))
    b = load_bench(path, tmp_path / "out")
    _write(b.output_dir / "start", START_OUT, START_REWARD)
    better = ["one", "two", "three", "four", "five"]
    for seed, shift in zip(b.seeds, (1.0, 2.0, 3.0)):  # every item exactly `shift` better on the reward
        _write(b.run_dir("up", seed) / "test", better, [r + shift for r in START_REWARD])
        kl = [{"iteration": 1, "kl/mean": 9.0}, {"iteration": 2, "kl/mean": shift}, {"iteration": 2}]
        (b.run_dir("up", seed) / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kl))
    _write(b.run_dir("old", 0) / "test", better, [r + 1 for r in START_REWARD], items=False)
    _write(b.run_dir("moved", 0) / "test", better, START_REWARD, prompts=PROMPTS[::-1])
    _write(b.run_dir("off", 0) / "test", better, START_REWARD, chrf=99.0)  # eval.json not from these outputs
    return b


def test_paired_statistics_and_the_combined_verdict(bench):
    res = summarize(bench)
    up = res["summary"]["up"]["reward"]
    # each seed: Δ = shift on every item, so every resample gives Δ = shift: [shift, shift], p = 1/1001
    for seed, shift in (("0", 1.0), ("1", 2.0), ("2", 3.0)):
        p = up["paired"]["per_seed"][seed]
        assert (p["delta"], p["lo"], p["hi"]) == pytest.approx((shift, shift, shift))
        assert p["p"] == pytest.approx(1 / 1001)
    # combined: mean 2, s²_between = 1, Var_boot = 0 -> ±t_2·sqrt(1/3) = 4.303·.57735 = 2.4843: includes 0, so
    # "no significant change" although each seed alone is significant (the seed noise is the larger)
    c = up["paired"]["combined"]
    assert (c["mean_delta"], c["s2_between"], c["var_boot"]) == pytest.approx((2.0, 1.0, 0.0))
    assert (c["lo"], c["hi"]) == pytest.approx((2 - 2.4843, 2 + 2.4843), abs=1e-3)
    assert up["verdict"] == "no significant change" and up["paired"]["significant_seeds"] == 3
    # chrF rescored from the completions with sacrebleu's statistics: Δ = the eval.json difference
    chrf = res["summary"]["up"]["chrf"]
    assert chrf["paired"]["per_seed"]["0"]["delta"] == pytest.approx(chrf["values"][0] - res["start"]["chrf"])
    assert (
        chrf["verdict"] == "better than start"
    )  # same outputs on every seed: only test-set noise, all above 0
    assert res["paired_bootstrap"] == {"resamples": 1000, "seed": 12345, "items": 5}


def test_fallbacks_say_why(bench):
    res = summarize(bench)
    s = res["summary"]
    # old predictions: no per-item length, so Student-t over seeds (one seed: no interval); rewards still pair
    assert s["old"]["response_length"]["paired"] is None
    assert s["old"]["response_length"]["verdict"] == "one seed: no interval"
    assert "no per-item values" in s["old"]["response_length"]["verdict_from"]
    assert s["old"]["reward"]["paired"]["per_seed"]["0"]["delta"] == pytest.approx(1.0)
    assert s["old"]["chrf"]["paired"] is not None  # rescored from the completions
    # other items (reversed order): never paired, and said so
    assert (
        res["item_check"]["moved-seed0"] == "item 0 differs from the starting model's (prompt or references)"
    )
    assert res["item_check"]["up-seed1"] == "same items"
    assert s["moved"]["reward"]["paired"] is None and "item 0 differs" in s["moved"]["reward"]["verdict_from"]
    # an eval.json score the outputs do not give
    assert s["off"]["chrf"]["paired"] is None and "eval.json 99" in s["off"]["chrf"]["verdict_from"]
    assert s["off"]["reward"]["paired"] is not None


def test_guards_examples_report_and_relative_paths(bench):
    res = summarize(bench)
    # final KL: the last iteration's kl/mean (not the first, 9, nor a row without it): 1, 2, 3 -> mean 2
    kl = res["guards"]["up"]
    assert kl["final_kl"] == {"0": 1.0, "1": 2.0, "2": 3.0} and kl["mean"] == pytest.approx(2.0)
    assert kl["ci95_half_width"] == pytest.approx(4.303 / math.sqrt(3), abs=1e-3)
    # three items, the same for every system, with references; a system on other items is left out
    ex = res["examples"]
    assert len(ex) == 3 and len({e["item"] for e in ex}) == 3
    for e in ex:
        i = e["item"]
        assert e["prompt"] == PROMPTS[i] and e["references"] == REFS[i]
        assert list(e["outputs"]) == ["starting model", "up (seed 0)", "old (seed 0)", "off (seed 0)"]
        assert e["outputs"]["starting model"] == START_OUT[i]
    md = write_results(bench, []).read_text()
    assert "## Reward-hacking guards" in md and "| up | 2.000 ± 2.484 |" in md
    assert "## Sample outputs" in md and "| reference 2 | 4 |" in md
    assert "paired p<0.05 on 3 of 3 seeds" in md and "s0: +1.000 [+1.000, +1.000] p=0.001" in md
    assert "**not evaluated on the starting model's test items" in md and "moved-seed0" in md
    data = json.loads((bench.output_dir / "results.json").read_text())

    def strings(x):
        if isinstance(x, dict):
            return [s for k, v in x.items() for s in [k, *strings(v)]]
        if isinstance(x, list):
            return [s for v in x for s in strings(v)]
        return [x] if isinstance(x, str) else []

    assert not [s for s in strings(data) if s.startswith("/")]
    assert data["base_config"] == "configs/smoke.yaml"  # relative to the repository
    assert data["file"] == "../bench.yaml"  # outside a repository: relative to the results folder
    assert str(bench.output_dir.parent) not in json.dumps(data)


def test_paired_verdict_directions():
    assert paired_verdict(0.1, 2.0, "chrf") == "better than start"
    assert paired_verdict(0.1, 2.0, "ter") == "worse than start"
    assert paired_verdict(-2.0, -0.1, "ter") == "better than start"
    assert paired_verdict(-2.0, -0.1, "response_length") == "lower than start"
    assert paired_verdict(0.0, 2.0, "chrf") == "no significant change"  # touching 0 is not excluding it


def test_a_broken_predictions_file_is_a_clear_error(bench):
    file = bench.run_dir("up", 1) / "test" / "predictions.jsonl"
    file.write_text(file.read_text() + "{not json\n")
    with pytest.raises(BenchError, match=r"up-seed1/test/predictions.jsonl, line 6: not valid JSON"):
        write_results(bench, [])
