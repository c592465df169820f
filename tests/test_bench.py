"""``rl4text eval`` (greedy / sampling / beam) and the benchmark runner ``rl4text bench``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rl4text.bench import BenchError, load_bench, run_bench, summarize
from rl4text.cli import main
from rl4text.evaluate import beam_search
from rl4text.rollout import encode_samples, generate

from .conftest import tiny_model

SMOKE = Path(__file__).parent.parent / "configs" / "smoke.yaml"
FAST = ["train.iterations=2", "rollout.batch_size=8", "eval.max_samples=4", "tracking.print_every=0"]
FAST += ["tracking.wandb.enabled=false", "tracking.progress=none", "eval.every=1"]


@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_beam_search_with_one_beam_is_the_greedy_rollout(tokenizer, kind):
    """HF generate's output, trimmed to responses (prompt / decoder start off, EOS kept, padding masked), matches
    rl4text's own greedy loop token for token; so beam outputs are cut the same way."""
    model, _ = tiny_model(kind, tokenizer, seed=3)
    seq2seq = kind == "seq2seq"
    samples = [{"prompt": p} for p in ("letters: abc", "letters: qwertyuiop", "x")]
    ids, mask = encode_samples(tokenizer, samples, 32, seq2seq, use_chat_template=False)
    ours, ours_mask = generate(
        model,
        seq2seq,
        ids,
        mask,
        max_new_tokens=10,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    theirs, theirs_mask = beam_search(model, seq2seq, ids, mask, 10, tokenizer, num_beams=1)
    width = ours.shape[1]
    assert torch.equal(theirs_mask[:, :width], ours_mask)
    assert not theirs_mask[:, width:].any()
    assert torch.equal(theirs[:, :width] * ours_mask.long(), ours * ours_mask.long())


def test_beam_search_masks_after_eos(tokenizer):
    model, _ = tiny_model("causal", tokenizer, seed=1)
    # make EOS likely so some beams end early
    with torch.no_grad():
        model.lm_head.weight[tokenizer.eos_token_id] += 0.5 * model.lm_head.weight.abs().mean()
    samples = [{"prompt": f"letters: {w}"} for w in ("ab", "cdefg", "hij", "k")]
    ids, mask = encode_samples(tokenizer, samples, 32, False, use_chat_template=False)
    resp, resp_mask = beam_search(model, False, ids, mask, 12, tokenizer, num_beams=3)
    for row, m in zip(resp.tolist(), resp_mask.tolist()):
        n = int(sum(m))
        assert m == [1.0] * n + [0.0] * (len(m) - n)  # a contiguous prefix
        kept = row[:n]
        assert tokenizer.eos_token_id not in kept[:-1]  # nothing after the first EOS
        assert all(t == tokenizer.pad_token_id for t in row[n:])


def test_eval_command_on_run_folder_and_config(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(SMOKE), "--output-dir", str(run), *FAST]) == 0
    assert main(["eval", str(run), "--max-samples", "5", "eval.num_beams=2"]) == 0
    out = run / "eval-test"
    info = json.loads((out / "eval.json").read_text())
    assert info["model"] == str(run / "model") and info["split"] == "test" and info["n"] == 5
    assert info["decoding"]["strategy"] == "beam" and info["decoding"]["num_beams"] == 2
    assert {"reward", "chrf", "response_length", "eos_rate"} <= set(info["metrics"])
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and {"prompt", "completion", "references", "reward"} <= set(rows[0])
    # nothing already written is replaced without --overwrite
    with pytest.raises(SystemExit, match="overwrite"):
        main(["eval", str(run), "--max-samples", "5"])
    # a config evaluates its own (starting) model; sampling is an option
    base = tmp_path / "base"
    args = ["eval", str(SMOKE), "--split", "val", "--output-dir", str(base), "eval.do_sample=true"]
    assert main([*args, "--max-samples", "3"]) == 0
    assert json.loads((base / "eval.json").read_text())["decoding"]["strategy"] == "sampling"
    # an unknown split is a clear error, exit 2
    assert main(["eval", str(SMOKE), "--split", "nope", "--output-dir", str(tmp_path / "x")]) == 2
    assert "no split 'nope'" in capsys.readouterr().err


def write_bench(tmp_path: Path, **extra) -> Path:
    data = {
        "name": "tiny",
        "base_config": str(SMOKE),
        "overrides": FAST,
        "algorithms": {"ppo": [], "a2c": []},
        "seeds": [0],
        "test": {"split": "test", "max_samples": 6},
        **extra,
    }
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


def test_two_run_benchmark_on_the_smoke_config(tmp_path, capsys):
    bench_file = write_bench(tmp_path, prune_checkpoints=True)
    out = tmp_path / "out"
    assert main(["bench", str(bench_file), "--output-dir", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["runs"]) == {"ppo", "a2c"}
    start = json.loads((out / "start" / "eval.json").read_text())["metrics"]
    for algo in ("ppo", "a2c"):
        run = out / "runs" / f"{algo}-seed0"
        test = json.loads((run / "test" / "eval.json").read_text())
        assert test["split"] == "test" and test["max_samples"] == 6
        s = results["summary"][algo]["reward"]
        assert s["mean"] == pytest.approx(test["metrics"]["reward"])
        assert s["change"] == pytest.approx(s["mean"] - start["reward"])
        # one seed: no Student-t interval, but a paired bootstrap against the start on the same test items
        assert s["ci95_half_width"] is None and s["paired"]["n"] == 1
        assert s["verdict_from"].startswith("combined interval")
        assert (run / "model" / "config.json").is_file() and not (run / "checkpoints").exists()  # pruned
    # predictions carry each sample's value of every mean-type score (not chrF: sacrebleu sums statistics)
    rows = [json.loads(line) for line in (out / "start" / "predictions.jsonl").read_text().splitlines()]
    assert set(rows[0]["item"]) == {"reward", "reward/char_fraction", "response_length", "eos_rate"}
    for key in rows[0]["item"]:
        assert sum(r["item"][key] for r in rows) / len(rows) == pytest.approx(start[key], abs=1e-12)
    # chrF rescored from the stored completions (sacrebleu's statistics, every item once) is eval.json's, exactly
    from rl4text.bench_stats import item_scores

    chrf, why = item_scores("chrf", rows, start["chrf"])
    assert why is None and chrf.corpus() == start["chrf"]
    md = (out / "results.md").read_text()
    assert "| starting model |" in md and "## chrf" in md and "change vs start" in md
    assert "## Reward-hacking guards" in md and "## Sample outputs" in md and "paired p<0.05 on" in md
    assert '"/' not in (out / "results.json").read_text()  # no absolute path of this machine
    # --report recomputes everything from the folder alone
    (out / "results.md").unlink()
    (out / "results.json").unlink()
    assert main(["bench", str(bench_file), "--output-dir", str(out), "--report"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert {k: v for k, v in again.items() if k != "written"} == {
        k: v for k, v in results.items() if k != "written"
    }
    assert (out / "results.md").read_text() == md
    assert (out / "curve_rollout_reward_mean.png").is_file() and (out / "curve_eval_reward.png").is_file()
    # a second invocation redoes nothing: finished pairs are left as they are
    stamp = (out / "runs" / "ppo-seed0" / "metrics.jsonl").stat().st_mtime_ns
    assert main(["bench", str(bench_file), "--output-dir", str(out)]) == 0
    assert (out / "runs" / "ppo-seed0" / "metrics.jsonl").stat().st_mtime_ns == stamp
    assert "training" not in capsys.readouterr().out.split("# Benchmark")[-1].split("\n")[0]


def test_interrupted_pair_resumes_from_its_checkpoint(tmp_path, capsys):
    bench_file = write_bench(tmp_path, algorithms={"ppo": []})
    out = tmp_path / "out"
    bench = load_bench(bench_file, out)
    # simulate a pair killed after its first checkpoint: train 1 of 2 iterations with a checkpoint
    from rl4text.train import train

    cfg = bench.config("ppo", 0)
    cfg.train.iterations = 1
    train(cfg, bench.run_dir("ppo", 0))
    (bench.run_dir("ppo", 0) / "eval.json").unlink()  # not finished
    run_bench(bench_file, out)
    assert "resuming" in capsys.readouterr().out
    rows = [json.loads(line) for line in (bench.run_dir("ppo", 0) / "metrics.jsonl").read_text().splitlines()]
    assert max(r["iteration"] for r in rows) == 2


def test_summary_statistics_by_hand(tmp_path):
    bench_file = write_bench(tmp_path, seeds=[0, 1, 2], algorithms={"ppo": []})
    bench = load_bench(bench_file, tmp_path / "out")
    for path, value in [(bench.output_dir / "start", 1.0)] + [
        (bench.run_dir("ppo", s) / "test", v) for s, v in zip(bench.seeds, (1.5, 2.5, 3.5))
    ]:
        path.mkdir(parents=True)
        (path / "eval.json").write_text(json.dumps({"metrics": {"chrf": value, "response_length": value}}))
    s = summarize(bench)["summary"]["ppo"]
    # mean 2.5, sd 1, t_{0.975,2} = 4.303 -> half-width 4.303 / sqrt(3) = 2.4843
    assert s["chrf"]["mean"] == pytest.approx(2.5)
    assert s["chrf"]["ci95_half_width"] == pytest.approx(4.303 / 3**0.5, abs=1e-4)
    assert s["chrf"]["change"] == pytest.approx(1.5)
    assert s["chrf"]["verdict"] == "no significant change"  # 1.5 < 2.48
    assert s["response_length"]["verdict"] == "no significant change"


def test_bad_benchmark_files_name_the_key(tmp_path):
    with pytest.raises(BenchError, match=r"unknown key.*'sedes'"):
        load_bench(write_bench(tmp_path, sedes=[0]))
    with pytest.raises(BenchError, match="'seeds' must be"):
        load_bench(write_bench(tmp_path, seeds="0"))
    with pytest.raises(BenchError, match=r"algorithms\.ppo: .*unknown key"):
        run_bench(write_bench(tmp_path, algorithms={"ppo": ["algorithm.clip_rang=0.1"]}), tmp_path / "o")
    with pytest.raises(BenchError, match="base_config"):
        load_bench(write_bench(tmp_path, base_config="missing.yaml"))


@pytest.mark.parametrize(
    "path",
    sorted(str(p) for p in (Path(__file__).parent.parent / "benchmarks").rglob("*.yaml")),
    ids=lambda p: Path(p).name,
)
def test_shipped_benchmarks_resolve(path):
    """Every shipped benchmark's configs load, and its algorithms, tasks, rewards and metrics are registered."""
    from rl4text.bench import check_bench

    bench = load_bench(path)
    check_bench(bench, [])
    assert bench.pairs()
