"""The plumbing of benchmarks/vs_trl.py: ``--variant NAME:OVERRIDES`` parsing and one table row and ratio per
variant (the timings themselves come from benchmarks/issue13_measure.sh, never from tests)."""

import importlib.util
import json
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_vs_trl():
    return _load("vs_trl")


def test_variant_parsing_splits_overrides_as_a_shell_would():
    vs = load_vs_trl()
    assert vs.parse_variant("fp32:") == ("fp32", [])
    assert vs.parse_variant("lora:'model.lora={r: 8, alpha: 16}' train.micro_batch_size=8") == (
        "lora",
        ["model.lora={r: 8, alpha: 16}", "train.micro_batch_size=8"],
    )
    for bad in ("no-colon", ":model.autocast=true", "trl:model.autocast=true"):
        with pytest.raises(SystemExit, match="NAME:OVERRIDES"):
            vs.parse_variant(bad)


def test_report_has_one_row_and_one_ratio_per_variant():
    vs = load_vs_trl()

    def run(steps, rss, tokens):
        return {"step_s": steps, "tokens": tokens, "peak_rss_gb": rss}

    runs = {
        "fp32": [run([40.0, 44.0], 5.0, [800.0, 800.0])],
        "autocast": [run([20.0, 24.0], 5.5, [800.0, 800.0])],
        "trl": [run([80.0, 90.0], 8.0, [700.0, 700.0]) | {"versions": {"trl": "1.16.0"}}],
    }
    args = types.SimpleNamespace(
        rounds=1,
        warmup=0,
        steps=2,
        variants=[("fp32", []), ("autocast", ["model.autocast=true"])],
        base_overrides=["algorithm.k=4"],
        algorithm="rloo",
    )
    text = vs.report(runs, args, "cmd")
    assert "| rl4text `rloo` fp32 | `(none)` | 2 | 42.0 | 5.00 | 19.0 |" in text
    assert "| rl4text `rloo` autocast | `model.autocast=true` | 2 | 22.0 | 5.50 | 36.4 |" in text
    assert "| TRL `RLOOTrainer` | fp32 | 2 | 85.0 | 8.00 | 8.2 |" in text
    # medians 42 / 85 and 22 / 85; peak RSS 5.0 / 8.0 and 5.5 / 8.0
    assert "**fp32 / TRL: step time 0.49x (throughput 2.02x), peak RSS 0.62x.**" in text
    assert "**autocast / TRL: step time 0.26x (throughput 3.86x), peak RSS 0.69x.**" in text
    assert "alternated fp32 autocast trl;" in text
    assert text.startswith("# rl4text vs TRL: RLOO on SmolLM2")
    args.algorithm = "grpo"
    grpo = vs.report(runs, args, "cmd")
    assert grpo.startswith("# rl4text vs TRL: GRPO on SmolLM2")
    assert "| rl4text `grpo` fp32 |" in grpo and "| TRL `GRPOTrainer` | fp32 | 2 | 85.0 |" in grpo
    assert "RLOOTrainer" not in grpo


def test_grue_table_cells_use_the_combined_interval_and_mark_only_intervals_that_exclude_zero():
    grue = _load("grue_table")
    paired = {"combined": {"mean_delta": 1.5, "lo": 0.5, "hi": 2.5}}
    results = {
        "start": {"reward": 0.2, "chrf": 17.0},
        "summary": {
            "rloo": {
                "reward": {
                    "mean": 0.21,
                    "n": 3,
                    "change": 0.01,
                    "paired": {"combined": {"mean_delta": 0.01, "lo": -0.01, "hi": 0.03}},
                },
                "chrf": {"mean": 18.5, "n": 3, "change": 1.5, "paired": paired},
            },
            "ppo": {"chrf": {"mean": 16.0, "n": 2, "change": -1.0, "ci95_half_width": 3.0, "paired": None}},
        },
    }
    lines = grue.table(results, ["reward", "chrf"], "zero-shot", {"reward"})
    assert lines[2] == "| zero-shot | 20.00 | 17.00 |"  # reward shown ×100
    assert lines[3] == (
        "| zero-shot + rloo (n=3) | 21.00 (+1.00 [-1.00, +3.00]) | 18.50 (+1.50 [+0.50, +2.50]) **↑** |"
    )
    assert (
        lines[4] == "| zero-shot + ppo (n=2) | – | 16.00 (-1.00 ± 3.00) |"
    )  # no paired test: the t half-width
    # a second block (another benchmark) has no header, and a metric its start lacks is a dash
    block = grue.table(
        {"start": {"chrf": 30.0}, "summary": {}}, ["reward", "chrf"], "supervised", set(), False
    )
    assert block == ["| supervised | – | 30.00 |"]


def test_summary_diagnostics_count_summaries_about_the_text_and_endings(tmp_path):
    diag = _load("summary_diagnostics")
    rows = [
        {"completion": "This abstract summarizes the main idea.", "reward/missing_eos": 0.0},
        {"completion": "We propose a new method; the authors show it works", "reward/missing_eos": -0.1},
        {"completion": "CENs generate simple models on the fly.", "reward/missing_eos": 0.0},
        {"completion": "In this abstract, the writer proposes a setting", "reward/missing_eos": -0.1},
    ]
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    d = diag.diagnose(path)
    # openers: rows 1 and 4; mentions: rows 1 (this abstract), 2 (the authors), 4; words 6 + 10 + 7 + 8 = 31
    assert d == {"n": 4, "opens_with_abstract": 2, "mentions_the_text": 3, "mean_words": 31 / 4, "ended": 2}
