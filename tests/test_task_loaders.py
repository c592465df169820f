"""Task loaders: the real local data (when RL4TEXT_DATA is set), the Hub path through tiny fixtures in the Hub
layouts (tests/fixtures/hub/, read by ``datasets.load_dataset`` offline), and the generic JSONL/CSV task."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from rl4text.registry import TASKS
from rl4text.tasks import TaskDataError

HUB = Path(__file__).parent / "fixtures" / "hub"
DATA = Path(os.environ.get("RL4TEXT_DATA", "/nonexistent"))


def needs_data(folder: str):
    return pytest.mark.skipif(
        not (DATA / folder).exists(), reason=f"RL4TEXT_DATA with {folder} not available"
    )


@pytest.fixture
def no_data(monkeypatch):
    monkeypatch.delenv("RL4TEXT_DATA", raising=False)


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """``datasets`` writes its arrow cache under tmp_path, not the user's cache."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    return tmp_path / "hf-cache"


# ------------------------------------------------------------------------------------- real local files


@needs_data("multi30k")
def test_multi30k_both_directions_real():
    de_en = TASKS.build("multi30k")
    en_de = TASKS.build(
        "multi30k",
        source_lang="en",
        target_lang="de",
        instruction=None,
        prefix="translate English to German: ",
    )
    a, b = de_en.split("test"), en_de.split("test")
    assert len(a) == len(b) == 1000
    assert a[0]["references"][0] == b[0]["meta"]["source"]
    assert b[0]["references"][0] == a[0]["meta"]["source"]
    assert a[0]["prompt"].startswith("Translate this German sentence into English.")
    assert b[0]["prompt"] == "translate English to German: " + b[0]["meta"]["source"]
    assert len(TASKS.build("multi30k", max_samples=5).split("train")) == 5


@needs_data("wmt22_de_en")
def test_wmt22_real():
    task = TASKS.build("wmt22")
    assert list(task.splits) == ["test"] and task.metrics == ["chrf", "bleu"]
    rows = task.split("test")
    assert len(rows) == 1984
    assert [r["meta"]["sid"] for r in rows[:3]] == [1, 2, 3]
    meta = rows[0]["meta"]
    assert set(meta) == {"sid", "source", "systems"} and meta["source"] in rows[0]["prompt"]
    assert len(meta["systems"]) == 9
    scores = [s for r in rows for s in r["meta"]["systems"].values() if "da_raw" in s]
    assert len(scores) > 10_000
    assert all({"text", "da_raw", "da_z", "n"} == set(s) for s in scores)
    unscored = [s for r in rows for s in r["meta"]["systems"].values() if "da_raw" not in s]
    assert all(set(s) == {"text"} for s in unscored)
    carved = TASKS.build("wmt22", val_size=100, instruction=None)
    assert len(carved.split("val")) == 100 and len(carved.split("test")) == 1884
    assert carved.split("test")[0]["meta"]["sid"] == 101
    assert carved.split("val")[0]["prompt"] == rows[0]["meta"]["source"]


@needs_data("scitldr")
def test_scitldr_real():
    task = TASKS.build("scitldr")
    assert {s: len(task.split(s)) for s in task.splits} == {"train": 1992, "val": 619, "test": 618}
    test = task.split("test")
    assert sum(len(r["references"]) for r in test) / len(test) > 3
    assert max(len(r["references"]) for r in test) > 1
    assert test[0]["prompt"].startswith("Summarize this scientific abstract in one sentence.\n\n")
    assert test[0]["meta"]["paper_id"]
    assert task.metrics == ["rouge", "bleu"]
    short = TASKS.build(
        "scitldr", instruction=None, prefix="summarize: ", max_source_chars=100, max_samples=3
    )
    rows = short.split("val")
    assert len(rows) == 3 and all(len(r["prompt"]) <= len("summarize: ") + 100 for r in rows)


@needs_data("summeval")
def test_cnn_dailymail_summeval_offline(hf_cache):
    task = TASKS.build("cnn_dailymail")
    assert set(task.splits) == {"train", "val", "test", "summeval"} and task.metrics == ["rouge"]
    rows = task.split("summeval")
    assert len(rows) == 100 and all(len(r["references"]) == 11 for r in rows)
    meta = rows[0]["meta"]
    assert meta["doc_id"].startswith(("dm-test", "cnn-test")) and meta["source"] in rows[0]["prompt"]
    assert len(meta["systems"]) == 16
    assert set(next(iter(meta["systems"].values()))["scores"]) == {
        "coherence",
        "consistency",
        "fluency",
        "relevance",
    }
    # the Hub splits need the Hub: offline they fail with a message that says what to do
    with pytest.raises(TaskDataError, match=r"cnn_dailymail.*abisee/cnn_dailymail.*summeval"):
        task.split("train")


# ------------------------------------------------------------------ Hub path, through local Hub-layout files


def test_wmt16_hub_layout(hf_cache):
    task = TASKS.build("wmt16", path=str(HUB / "wmt16"))
    assert set(task.splits) == {"train", "val", "test"} and task.metrics == ["chrf", "bleu"]
    rows = task.split("train")
    assert len(rows) == 3
    assert rows[0]["references"] == ["A dog runs in the park."]
    assert rows[0]["meta"] == {"source": "Ein Hund läuft im Park."}
    assert "German" in rows[0]["prompt"] and "Ein Hund läuft im Park." in rows[0]["prompt"]
    reverse = TASKS.build(
        "wmt16", source_lang="en", target_lang="de", instruction=None, path=str(HUB / "wmt16"), max_samples=1
    )
    assert reverse.split("val") == [
        {
            "prompt": "The house is red.",
            "references": ["Das Haus ist rot."],
            "meta": {"source": "The house is red."},
        }
    ]


def test_iwslt2017_hub_layout_both_directions(hf_cache):
    en_de = TASKS.build("iwslt2017", path=str(HUB / "iwslt2017"), instruction=None, prefix="en-de: ")
    assert en_de.split("test")[0]["prompt"] == "en-de: The cat sleeps."
    assert en_de.split("test")[0]["references"] == ["Die Katze schläft."]
    de_en = TASKS.build("iwslt2017", source_lang="de", target_lang="en", path=str(HUB / "iwslt2017"))
    assert de_en.split("train")[1]["references"] == ["Two men play football."]
    assert len(TASKS.build("iwslt2017", path=str(HUB / "iwslt2017"), max_samples=2).split("train")) == 2
    streamed = TASKS.build("iwslt2017", path=str(HUB / "iwslt2017"), max_samples=1, streaming=True)
    assert len(streamed.split("train")) == 1


def test_hub_missing_language_names_the_field(hf_cache):
    task = TASKS.build("wmt16", source_lang="ro", target_lang="en", config="de-en", path=str(HUB / "wmt16"))
    with pytest.raises(TaskDataError, match=r"row 0: field 'translation.ro' is missing"):
        task.split("test")


def test_cnn_dailymail_hub_layout(hf_cache, no_data):
    task = TASKS.build("cnn_dailymail", path=str(HUB / "cnn_dailymail"))
    rows = task.split("train")
    assert len(rows) == 3
    assert rows[0]["references"] == ["Council approves new river bridge .\nConstruction starts next spring ."]
    assert rows[0]["meta"] == {"id": "a1"}
    assert rows[0]["prompt"].startswith("Summarize this news article") and "new bridge" in rows[0]["prompt"]
    assert len(task.split("val")) == 1
    seq2seq = TASKS.build(
        "cnn_dailymail",
        path=str(HUB / "cnn_dailymail"),
        instruction=None,
        prefix="summarize: ",
        max_source_chars=30,
        max_samples=2,
    )
    rows = seq2seq.split("train")
    assert len(rows) == 2 and rows[0]["prompt"] == "summarize: The council voted on Tuesday"
    with pytest.raises(TaskDataError, match=r"summeval.*RL4TEXT_DATA"):
        task.split("summeval")


def test_xsum_hub_layout(hf_cache):
    task = TASKS.build("xsum", path=str(HUB / "xsum"))
    assert task.metrics == ["rouge"]
    row = task.split("test")[0]
    assert row["references"] == ["New downtown library opens."] and row["meta"] == {"id": "t1"}
    assert row["prompt"].startswith("Summarize this article in one sentence.\n\nA new library")


def test_xsum_single_file_path(hf_cache):
    file = HUB / "xsum" / "data" / "train-00000-of-00001.jsonl"
    rows = TASKS.build("xsum", path=str(file)).split("train")
    assert [r["meta"]["id"] for r in rows] == ["a1", "a2", "a3"]


def test_scitldr_hub_fallback(hf_cache, no_data, monkeypatch):
    from rl4text.tasks import summarization

    monkeypatch.setattr(summarization, "SCITLDR_HUB", str(HUB / "scitldr"))  # the Hub id, as a local folder
    task = TASKS.build("scitldr")
    test = task.split("test")
    assert len(test) == 1 and len(test[0]["references"]) == 3
    assert test[0]["meta"] == {
        "paper_id": "p4",
        "source": "We release a dataset of code reviews. Baselines are weak.",
    }
    assert len(task.split("val")) == 1
    assert TASKS.build("scitldr", path=str(HUB / "scitldr")).split("train")[1]["references"] == [
        "A faster optimizer for vision.",
        "New optimizer, faster convergence.",
    ]


def test_multi30k_hub_fallback(hf_cache, no_data, monkeypatch):
    from rl4text.tasks import translation

    monkeypatch.setattr(translation, "MULTI30K_HUB", str(HUB / "multi30k"))
    task = TASKS.build("multi30k", instruction=None, prefix="translate German to English: ")
    assert task.split("val")[0] == {
        "prompt": "translate German to English: Das Haus ist rot.",
        "references": ["The house is red."],
        "meta": {"source": "Das Haus ist rot."},
    }
    reverse = TASKS.build("multi30k", source_lang="en", target_lang="de", path=str(HUB / "multi30k"))
    assert reverse.split("train")[0]["references"] == ["Ein Hund läuft im Park."]
    assert "English sentence into German" in reverse.split("train")[0]["prompt"]


def test_multi30k_falls_back_to_the_embedded_sample(hf_cache, no_data, monkeypatch, capsys, tmp_path):
    """Neither RL4TEXT_DATA nor the Hub (offline): the sample shipped in the package, with a one-line notice."""
    from rl4text.tasks import translation

    monkeypatch.setattr(translation, "_notified", set())
    task = TASKS.build("multi30k")
    assert [len(task.split(s)) for s in ("train", "val", "test")] == [3000, 1014, 1000]
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and "embedded sample" in notice[0] and "bentrevett/multi30k" in notice[0]
    first = task.split("test")[0]
    assert first["meta"]["source"] == "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt."
    assert first["references"] == ["A man in an orange hat starring at something."]
    # an explicit path= is never replaced by the sample
    with pytest.raises(TaskDataError, match=r"path .*nowhere does not exist"):
        TASKS.build("multi30k", path="/nowhere").split("train")
    # a Hub that cannot be reached is not retried: the probe fails at once and no load is attempted
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(translation, "hub_reachable", lambda hub_id: False)
    monkeypatch.setattr(translation, "hub_rows", lambda *a, **k: pytest.fail("the Hub was tried"))
    assert len(TASKS.build("multi30k", max_samples=7).split("train")) == 7
    # RL4TEXT_DATA set, but without multi30k/: the notice says so
    monkeypatch.setattr(translation, "_notified", set())
    monkeypatch.setenv("RL4TEXT_DATA", str(tmp_path))
    capsys.readouterr()
    assert len(TASKS.build("multi30k").split("val")) == 1014
    assert f"RL4TEXT_DATA={tmp_path} has no multi30k/" in capsys.readouterr().err


def test_hub_reachable_probe(monkeypatch, tmp_path):
    from rl4text.tasks.hub import hub_reachable

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert hub_reachable(str(tmp_path))  # a local folder
    import huggingface_hub

    def refused(repo_id, timeout):
        assert timeout <= 5  # a short probe, not the library's retries
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "dataset_info", refused)
    assert not hub_reachable("bentrevett/multi30k")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # datasets reads its cache at once then
    assert hub_reachable("bentrevett/multi30k")


def test_embedded_sample_is_package_data():
    """The files pyproject.toml ships as package data (a wheel or `pip install .` holds exactly these)."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    from rl4text.tasks.translation import EMBEDDED_MULTI30K

    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = {p for pattern in patterns["rl4text"] for p in (root / "rl4text").glob(pattern)}
    for split in ("train", "val", "test_2016_flickr"):
        for lang in ("de", "en"):
            assert EMBEDDED_MULTI30K / f"{split}.{lang}.gz" in shipped
    assert EMBEDDED_MULTI30K / "README.md" in shipped


def test_hub_offline_and_missing_datasets_errors(hf_cache, no_data, monkeypatch, tmp_path):
    with pytest.raises(TaskDataError, match=r"scitldr: cannot read allenai/scitldr.*RL4TEXT_DATA"):
        TASKS.build("scitldr").split("train")
    with pytest.raises(TaskDataError, match=r"path .*nowhere does not exist"):
        TASKS.build("xsum", path="/nowhere").split("train")
    only_train = tmp_path / "only-train"
    only_train.mkdir()
    (only_train / "train.jsonl").write_text('{"document": "d", "summary": "s"}\n')
    with pytest.raises(TaskDataError, match=r"xsum: cannot read .*only-train\[validation\].*Unknown split"):
        TASKS.build("xsum", path=str(only_train)).split("val")
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(TaskDataError, match=r"pip install 'rl4text\[hub\]'"):
        TASKS.build("wmt16").split("test")


def test_wmt22_needs_local_files(no_data, tmp_path):
    with pytest.raises(TaskDataError, match=r"wmt22: needs local files.*wmt22_de_en.*no Hub fallback"):
        TASKS.build("wmt22").split("test")
    with pytest.raises(TaskDataError, match=r"missing folder .*absent"):
        TASKS.build("wmt22", path=str(tmp_path / "absent")).split("test")


def test_bad_instruction_placeholder():
    with pytest.raises(TaskDataError, match=r"unknown placeholder 'lang'"):
        TASKS.build("multi30k", instruction="Translate to {lang}: {text}")


# --------------------------------------------------------------------------------------- generic task


def test_files_task_jsonl_and_csv(tmp_path):
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text(
        json.dumps({"q": "2+2?", "a": "4", "id": 1, "topic": "maths"})
        + "\n\n"
        + json.dumps({"q": "capital of France?", "a": ["Paris", "paris"], "id": 2, "topic": "geo"})
        + "\n"
    )
    csv_file = tmp_path / "val.csv"
    csv_file.write_text(
        'q,a1,a2,id,topic\n"multi-line, quoted\nquestion",yes,,7,misc\nhow many legs?,four|4,quatre,8,zoo\n'
    )
    task = TASKS.build(
        "files",
        files={"train": str(jsonl), "val": str(csv_file)},
        prompt_field="q",
        reference_field="a",
        instruction="[{topic}] {text}",
    )
    rows = task.split("train")
    assert rows[0] == {"prompt": "[maths] 2+2?", "references": ["4"], "meta": {"id": 1, "topic": "maths"}}
    assert rows[1]["references"] == ["Paris", "paris"]
    csv_task = TASKS.build(
        "csv",
        files={"val": str(csv_file)},
        prompt_field="q",
        reference_field=["a1", "a2"],
        reference_separator="|",
        meta_fields=["id"],
        instruction=None,
        prefix="Q: ",
    )
    rows = csv_task.split("val")
    assert rows[0] == {
        "prompt": "Q: multi-line, quoted\nquestion",
        "references": ["yes"],
        "meta": {"id": "7"},
    }
    assert rows[1]["references"] == ["four", "4", "quatre"]
    assert csv_task.metrics == ["chrf", "bleu"]
    tsv = tmp_path / "test.tsv"
    tsv.write_text("src\ttgt\nhello\thallo\nbye\ttschüss\n")
    tsv_task = TASKS.build(
        "files", files={"test": str(tsv)}, prompt_field="src", reference_field="tgt", max_samples=1
    )
    assert tsv_task.split("test") == [{"prompt": "hello", "references": ["hallo"], "meta": {}}]
    old_style = TASKS.build(
        "jsonl", files={"train": str(jsonl)}, prompt_field="q", reference_field="a", template="Q: {text}"
    )
    assert old_style.split("train")[0]["prompt"] == "Q: 2+2?" and old_style.name == "jsonl"


@pytest.mark.parametrize(
    ("name", "content", "fields", "message"),
    [
        (
            "bad.jsonl",
            '{"src": "x", "tgt": "y"}\n{"src": "x"}\n',
            {},
            r"bad\.jsonl line 2: missing field 'tgt'",
        ),
        ("bad.jsonl", '{"src": "x", "tgt": "y"}\n\n{oops\n', {}, r"bad\.jsonl line 3: not valid JSON"),
        (
            "bad.jsonl",
            '{"src": "  ", "tgt": "y"}\n',
            {},
            r"bad\.jsonl line 1: field 'prompt' is missing or empty",
        ),
        (
            "bad.jsonl",
            '{"src": "x", "tgt": ["", " "]}\n',
            {},
            r"bad\.jsonl line 1: field 'references' must be",
        ),
        ("bad.jsonl", '{"src": "x", "tgt": [3]}\n', {}, r"bad\.jsonl line 1: field 'tgt' must hold strings"),
        (
            "bad.jsonl",
            '{"src": "x", "tgt": "y"}\n',
            {"instruction": "{lang}: {text}"},
            r"line 1: .*field 'lang'",
        ),
        ("bad.csv", "src,tgt\nx,y\n,z\n", {}, r"bad\.csv line 3: field 'prompt' is missing or empty"),
        ("bad.csv", 'src,tgt\n"a\nb",y\nx,\n', {}, r"bad\.csv line 4: field 'references' must be"),
        ("bad.csv", "src,other\nx,y\n", {}, r"bad\.csv line 1: missing column\(s\) \['tgt'\]"),
        ("bad.csv", "src,tgt\nx,y\nx,y,z\n", {}, r"bad\.csv line 3: 3 fields but the header has 2"),
        ("bad.csv", "", {}, r"bad\.csv line 1: the file is empty"),
    ],
)
def test_files_task_errors_name_file_line_and_field(tmp_path, name, content, fields, message):
    path = tmp_path / name
    path.write_text(content)
    task = TASKS.build(
        "files", files={"train": str(path)}, prompt_field="src", reference_field="tgt", **fields
    )
    with pytest.raises(TaskDataError, match=message):
        task.split("train")


def test_files_task_missing_file_and_format(tmp_path):
    with pytest.raises(TaskDataError, match=r"file .*missing\.csv does not exist"):
        TASKS.build("csv", files={"train": str(tmp_path / "missing.csv")}).split("train")
    odd = tmp_path / "data.txt"
    odd.write_text("x\n")
    with pytest.raises(TaskDataError, match=r"data\.txt: cannot tell the format"):
        TASKS.build("files", files={"train": str(odd)}).split("train")
    with pytest.raises(TaskDataError, match="format must be one of"):
        TASKS.build("files", files={"train": str(odd)}, format="xml")
    with pytest.raises(TaskDataError, match="must map split names to files"):
        TASKS.build("files", files={})
