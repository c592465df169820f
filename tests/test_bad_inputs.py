"""Every bad input gets a clear error: exit code != 0, no traceback, one paragraph naming the culprit.

Each case runs the ``rl4text`` command (``rl4text.cli.main``, as the console script does) on the smoke config with
one thing wrong. A case passes when the command returns non-zero (or exits with a message), raises nothing that
would print a traceback, and its message names the culprit (a regex).
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from rl4text.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "configs" / "smoke.yaml")
RM_SMOKE = str(ROOT / "configs" / "rm_smoke.yaml")
QUICK = ["train.iterations=1", "eval.max_samples=4", "train.save_final_model=false", "tracking.print_every=0"]

PLUGIN = """
def wrong_length(prompts, completions, references, **kw):
    return [0.0] * (len(completions) + 1)

def returns_none(prompts, completions, references, **kw):
    return None

def returns_string(prompts, completions, references, **kw):
    return "0.5"

def strings_inside(prompts, completions, references, **kw):
    return ["high"] * len(completions)

def plain_reward(prompts, completions, references, **kw):
    return [float(len(c)) for c in completions]

def length_factory(scale: float = 1.0):
    def reward(prompts, completions, references, **kw):
        return [scale * len(c) for c in completions]
    return reward

def not_a_callable():
    return 3
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "badrewards.py").write_text(PLUGIN)
    (tmp_path / "brokenplugin.py").write_text("def reward(prompts, completions, references:\n    return []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("badrewards", "brokenplugin"):
        sys.modules.pop(name, None)
    yield "badrewards"
    for name in ("badrewards", "brokenplugin"):
        sys.modules.pop(name, None)


def reward(spec: str) -> str:
    return f"reward.components=[{{name: '{spec}'}}]"


def write_files(tmp: Path) -> dict[str, Path]:
    """Bad data and config files the cases point at."""
    files = {}
    bad_utf8 = tmp / "latin1.jsonl"
    bad_utf8.write_bytes(
        b'{"prompt": "ok", "references": ["fine"]}\n{"prompt": "caf\xe9", "references": ["x"]}\n'
    )
    files["latin1"] = bad_utf8
    gz = tmp / "latin1.jsonl.gz"
    gz.write_bytes(gzip.compress(bad_utf8.read_bytes()))
    files["latin1_gz"] = gz
    nan_ratings = tmp / "ratings.jsonl"
    nan_ratings.write_text(
        '{"prompt": "p", "completion": "a", "score": 1.0}\n{"prompt": "p", "completion": "b", "score": NaN}\n'
    )
    files["nan_ratings"] = nan_ratings
    dup = tmp / "dup.yaml"
    dup.write_text(Path(SMOKE).read_text() + "\ntrain:\n  iterations: 5\n")  # a second `train:` section
    files["dup"] = dup
    dup_inner = tmp / "dup_inner.yaml"
    dup_inner.write_text("model:\n  tokenizer: char\n  tokenizer: gpt2\n")
    files["dup_inner"] = dup_inner
    not_yaml = tmp / "broken.yaml"
    not_yaml.write_text("train: {iterations: 3\n")
    files["not_yaml"] = not_yaml
    return files


# (id, argv after the config, culprit regex); "{name}" is filled from write_files / the plugin module
CONFIG_CASES = [
    ("negative_lr", ["train.learning_rate=-1e-5"], r"train\.learning_rate must be positive, got -1e-05"),
    ("nan_lr", ["train.learning_rate=.nan"], r"train\.learning_rate must be a finite number"),
    (
        "negative_value_lr",
        ["train.value_learning_rate=-1"],
        r"train\.value_learning_rate must be positive or null",
    ),
    ("unknown_device", ["train.device=gpu0"], r"train\.device: unknown device 'gpu0'.*auto, cpu, cuda"),
    ("absent_gpu", ["train.device=cuda:7"], r"train\.device: 'cuda:7'"),
    ("eval_max_samples_0", ["eval.max_samples=0"], r"eval\.max_samples must be positive or null, got 0"),
    ("eval_batch_0", ["eval.batch_size=0"], r"eval\.batch_size must be positive"),
    ("eval_beams_0", ["eval.num_beams=0"], r"eval\.num_beams must be positive"),
    ("beams_and_sampling", ["eval.num_beams=4", "eval.do_sample=true"], r"eval\.num_beams=4 is beam search"),
    (
        "sampling_at_temperature_0",
        ["eval.do_sample=true", "eval.temperature=0"],
        r"eval\.do_sample=true needs eval\.temperature > 0, got 0",
    ),
    ("eval_every_negative", ["eval.every=-2"], r"eval\.every must be >= 0"),
    ("rollout_temperature_0", ["rollout.temperature=0"], r"rollout\.temperature must be positive"),
    ("iterations_negative", ["train.iterations=-1"], r"train\.iterations must be >= 0"),
    ("save_every_negative", ["train.save_every=-1"], r"train\.save_every must be >= 0, got -1"),
    ("keep_checkpoints_0", ["train.keep_checkpoints=0"], r"train\.keep_checkpoints must be positive"),
    ("weight_decay_negative", ["train.weight_decay=-0.1"], r"train\.weight_decay must be >= 0"),
    ("print_every_negative", ["tracking.print_every=-1"], r"tracking\.print_every must be >= 0"),
    ("reward_clip_negative", ["reward.clip=-1"], r"reward\.clip must be positive or null"),
    (
        "reward_weight_inf",
        ["reward.components.0.weight=.inf"],
        r"reward\.components\[0\]\.weight must be a finite",
    ),
    (
        "clip_range_negative",
        ["algorithm.clip_range=-0.2"],
        r"algorithm: clip_range must be positive, got -0\.2",
    ),
    ("clip_range_value_0", ["algorithm.clip_range_value=0"], r"clip_range_value must be positive or null"),
    ("gamma_above_1", ["algorithm.gamma=1.5"], r"gamma must be in \[0, 1\], got 1\.5"),
    ("lam_negative", ["algorithm.lam=-0.1"], r"lam must be in \[0, 1\]"),
    ("kl_coef_negative", ["algorithm.kl_coef=-1"], r"kl_coef must be >= 0"),
    ("kl_target_0", ["algorithm.kl_target=0"], r"kl_target must be positive or null"),
    ("max_grad_norm_0", ["algorithm.max_grad_norm=0"], r"max_grad_norm must be positive or null"),
    ("vf_coef_negative", ["algorithm.vf_coef=-1"], r"vf_coef must be >= 0"),
    (
        "a2c_minibatch_0",
        ["algorithm.name=a2c", "algorithm.minibatch_size=0"],
        r"minibatch_size must be positive",
    ),
    ("nlpo_top_mask", ["algorithm.name=nlpo", "algorithm.top_mask=1.5"], r"top_mask must be in \(0, 1\]"),
    ("sft_lr_negative", ["sft.learning_rate=-1"], r"sft\.learning_rate must be > 0"),
    (
        "misspelt_algorithm_name",
        ["algorithm.nmae=ppo"],
        r"unknown key 'algorithm\.nmae'\. Did you mean 'name'\?.*name, ",
    ),
    (
        "unknown_algorithm",
        ["algorithm.name=ppp"],
        r"algorithm\.name: unknown algorithm 'ppp'\. Did you mean 'ppo'",
    ),
    (
        "unknown_task_arg",
        ["task.args={n_train: 8, n_trian: 3}"],
        r"task\.args: .*'n_trian'.*Did you mean 'n_train'\?",
    ),
    (
        "unknown_reward_arg",
        ["reward.components.0.args={charz: x}"],
        r"reward\.components\[0\]\.args: .*'charz'",
    ),
    (
        "unknown_metric",
        ["eval.metrics=[blue]"],
        r"eval\.metrics\[0\]: unknown metric 'blue'\. Did you mean 'bleu'",
    ),
    ("unknown_top_level_key", ["trian.iterations=3"], r"unknown key 'trian'\. Did you mean 'train'"),
    ("wrong_type", ["train.iterations=three"], r"train\.iterations must be an integer, got 'three'"),
    (
        "missing_model_folder",
        ["model.random_init=null", "model.name_or_path=/no/such/model"],
        r"model\.name_or_path '/no/such/model' is not a folder",
    ),
]

FILE_CASES = [
    (
        "duplicate_section",
        "{dup}",
        [],
        r"dup\.yaml line \d+, column \d+: .*duplicate key 'train' \(lines \d+ and \d+\)",
    ),
    ("duplicate_key", "{dup_inner}", [], r"dup_inner\.yaml line 3.*duplicate key 'tokenizer'"),
    ("not_yaml", "{not_yaml}", [], r"broken\.yaml line \d+, column \d+: not valid YAML"),
    ("missing_config", "/no/such.yaml", [], r"config file '/no/such\.yaml' does not exist"),
    (
        "non_utf8_data",
        SMOKE,
        ["task.name=jsonl", "task.args={files: {train: '{latin1}', val: '{latin1}'}}"],
        r"latin1\.jsonl line 2: not valid UTF-8 \(byte b'\\xe9' at column 16\)",
    ),
    (
        "non_utf8_gz_data",
        SMOKE,
        ["task.name=jsonl", "task.args={files: {train: '{latin1_gz}', val: '{latin1_gz}'}}"],
        r"latin1\.jsonl\.gz line 2: not valid UTF-8",
    ),
]

REWARD_CASES = [
    ("reward_wrong_length", "wrong_length", r"'wrong_length' returned 5 values for 4 texts"),
    (
        "reward_none",
        "returns_none",
        r"'returns_none' returned NoneType None; a reward returns a list of numbers",
    ),
    ("reward_string", "returns_string", r"'returns_string' returned str '0\.5'"),
    ("reward_strings_inside", "strings_inside", r"'strings_inside' returned str 'high' for sample 0"),
    (
        "reward_factory_not_callable",
        "not_a_callable",
        r"'badrewards:not_a_callable': its factory returned int",
    ),
]


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """``rl4text ARGV`` in-process: (exit code, stdout + stderr). An exception escaping main() is what would
    print a traceback, so it fails the test."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse and `raise SystemExit("message")` print a message, no traceback
        code = exc.code if isinstance(exc.code, int) else 1
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except BaseException as exc:
        pytest.fail(
            f"rl4text {' '.join(argv)} raised {type(exc).__name__}: {exc} (a user would see a traceback)"
        )
    out = capsys.readouterr()
    return code, out.out + out.err


def assert_clear_error(code: int, output: str, culprit: str) -> None:
    assert code != 0, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    assert errors, output
    message = errors[-1]
    assert "\n" not in message.strip() and len(message) < 1200  # one paragraph
    import re

    assert re.search(culprit, message), f"{culprit!r} not in {message!r}"


@pytest.mark.parametrize(("argv", "culprit"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_value(argv, culprit, tmp_path, capsys):
    code, output = run_cli(["train", SMOKE, *argv, "--output-dir", str(tmp_path / "run")], capsys)
    assert_clear_error(code, output, culprit)


@pytest.mark.parametrize(
    ("config", "argv", "culprit"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES]
)
def test_bad_file(config, argv, culprit, tmp_path, capsys):
    files = {k: str(v) for k, v in write_files(tmp_path).items()}
    config = config.format(**files)
    argv = [
        a.replace("'{latin1}'", files["latin1"]).replace("'{latin1_gz}'", files["latin1_gz"]) for a in argv
    ]
    code, output = run_cli(["train", config, *argv, *QUICK, "--output-dir", str(tmp_path / "run")], capsys)
    assert_clear_error(code, output, culprit)


@pytest.mark.parametrize(("spec", "culprit"), [c[1:] for c in REWARD_CASES], ids=[c[0] for c in REWARD_CASES])
def test_bad_reward_output(spec, culprit, plugin, tmp_path, capsys):
    argv = [
        "train",
        SMOKE,
        reward(f"{plugin}:{spec}"),
        *QUICK,
        "eval.batch_size=4",
        "--output-dir",
        str(tmp_path / "r"),
    ]
    code, output = run_cli(argv, capsys)
    assert_clear_error(code, output, culprit)


COMPONENT_CASES = [
    (
        "plugin_with_syntax_error",
        ["reward.components=[{name: 'brokenplugin:reward'}]"],
        r"importing module 'brokenplugin' named in 'brokenplugin:reward' failed: SyntaxError",
    ),
    (
        "plugin_module_missing",
        ["reward.components=[{name: 'nosuchmodule:f'}]"],
        r"cannot import module 'nosuchmodule'",
    ),
    (
        "reward_factory_rejects_a_value",
        ["reward.components=[{name: rouge, args: {rouge_type: rouge9}}]"],
        r"reward component 'rouge' with args \{'rouge_type': 'rouge9'\}: building it failed: ValueError: rouge_type",
    ),
    ("output_dir_under_a_file", ["--output-dir", "{file}/run"], r"Not a directory: '.*plain\.txt/run'"),
]


@pytest.mark.parametrize(
    ("argv", "culprit"), [c[1:] for c in COMPONENT_CASES], ids=[c[0] for c in COMPONENT_CASES]
)
def test_bad_component_or_path(argv, culprit, plugin, tmp_path, capsys):
    (tmp_path / "plain.txt").write_text("not a folder")
    argv = [a.replace("{file}", str(tmp_path / "plain.txt")) for a in argv]
    if "--output-dir" not in argv:
        argv += ["--output-dir", str(tmp_path / "run")]
    code, output = run_cli(["train", SMOKE, *QUICK, *argv], capsys)
    assert_clear_error(code, output, culprit)


def test_ctrl_c_is_one_line(monkeypatch, capsys):
    import rl4text.registry

    class Interrupted(dict):
        def items(self):
            raise KeyboardInterrupt

    monkeypatch.setattr(rl4text.registry, "REGISTRIES", Interrupted())  # `rl4text list` reads it
    code, output = run_cli(["list"], capsys)
    assert code == 130 and output.strip() == "rl4text list: interrupted"


@pytest.mark.parametrize("n", ["0", "-1"])
def test_eval_max_samples_must_be_positive(n, tmp_path, capsys):
    argv = ["eval", SMOKE, "--split", "val", "--max-samples", n, "--output-dir", str(tmp_path / "e")]
    code, output = run_cli(argv, capsys)
    assert_clear_error(code, output, rf"--max-samples must be a positive integer, got {n}")


def test_nan_score_in_rm_ratings(tmp_path, capsys):
    files = write_files(tmp_path)
    argv = [
        "rm",
        "train",
        RM_SMOKE,
        f"data.path={files['nan_ratings']}",
        "--output-dir",
        str(tmp_path / "rm"),
    ]
    code, output = run_cli(argv, capsys)
    assert_clear_error(code, output, r"ratings\.jsonl line 2: field 'score' must be a finite number, got nan")


def test_reward_function_with_args_is_refused(plugin, tmp_path, capsys):
    argv = [
        "train",
        SMOKE,
        f"reward.components=[{{name: '{plugin}:plain_reward', args: {{scale: 2}}}}]",
        "--output-dir",
        str(tmp_path / "r"),
    ]
    code, output = run_cli(argv, capsys)
    assert_clear_error(code, output, r"'badrewards:plain_reward' is a reward function .* takes no args")


def test_broken_checkpoints_on_resume(tmp_path, capsys):
    """A truncated newest checkpoint: resume from the previous one with a warning that names the file."""
    out = tmp_path / "run"
    base = ["train", SMOKE, *QUICK[1:], "train.save_every=1", "--output-dir", str(out)]
    assert run_cli([*base, "train.iterations=3"], capsys)[0] == 0
    newest = out / "checkpoints" / "iter_000003" / "optimizer.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(
        UserWarning, match=r"iter_000003/optimizer\.safetensors: \d+ bytes, but \d+ were written"
    ):
        code, output = run_cli([*base, "train.iterations=4", "--resume"], capsys)
    assert code == 0 and "resumed from" in output and "iter_000002" in output


# ------------------------------------------------------------------------------ accepted, not rejected


def test_reward_function_or_factory_by_import_spec(plugin):
    from rl4text.rewards import build_reward

    prompts, completions, refs = ["p", "q"], ["abc", "de"], [["x"], ["y"]]
    assert build_reward(f"{plugin}:plain_reward")(prompts, completions, refs) == [3.0, 2.0]
    scaled = build_reward({"name": f"{plugin}:length_factory", "args": {"scale": 0.5}})
    assert scaled(prompts, completions, refs) == [1.5, 1.0]


def test_a_plain_string_is_one_reference():
    """evaluate/sacrebleu users pass one string per prediction: it must not be scored as a list of characters."""
    from rl4text.registry import METRICS, REWARDS
    from rl4text.rewards import build_reward

    preds = ["a cat sat on the mat", "the dog runs"]
    as_lists, as_strings = [["a cat sat on the mat"], ["a dog runs"]], ["a cat sat on the mat", "a dog runs"]
    for name in ("bleu", "chrf", "ter", "rouge"):
        metric = METRICS.build(name)
        listed, plain = metric.compute(preds, as_lists), metric.compute(preds, as_strings)
        assert plain.corpus == listed.corpus and plain.per_sample == listed.per_sample, name
    same = ["a cat sat on the mat"]  # identical text: BLEU 100 and TER 0 (scored as characters: ~8 and ~900)
    assert METRICS.build("bleu").compute(same, same).corpus["bleu"] == pytest.approx(100.0)
    assert METRICS.build("ter").compute(same, same).corpus["ter"] == 0.0
    for name in ("bleu", "chrf", "ter", "rouge"):
        fn = REWARDS.build(name)
        assert fn(["", ""], preds, as_strings) == fn(["", ""], preds, as_lists), name
        composed = build_reward(name)
        assert composed(["", ""], preds, as_strings) == composed(["", ""], preds, as_lists)
    assert build_reward("bleu")([""], same, same) == [pytest.approx(1.0)]


def test_the_console_script_prints_no_traceback(tmp_path):
    """The real process, once: exit code 2, one error line on stderr."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl4text.cli",
            "train",
            SMOKE,
            "train.learning_rate=-1",
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.strip().splitlines() == [
        f"rl4text train: error: {SMOKE} (with command-line overrides): train.learning_rate must be positive, got -1.0"
    ]
