"""Task loaders: local files in the shared-data layout, the generic JSON-lines task, and their errors."""

import gzip
import json
import os
from pathlib import Path

import pytest

from rl4text.registry import TASKS
from rl4text.tasks import TaskDataError


def write_gz(path: Path, lines: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


@pytest.fixture
def multi30k_root(tmp_path, monkeypatch):
    folder = tmp_path / "multi30k"
    folder.mkdir()
    for split in ("train", "val", "test_2016_flickr"):
        write_gz(folder / f"{split}.de.gz", ["Ein Hund läuft.", "Zwei Männer."])
        write_gz(folder / f"{split}.en.gz", ["A dog runs.", "Two men."])
    monkeypatch.setenv("RL4TEXT_DATA", str(tmp_path))
    return folder


def test_multi30k_local(multi30k_root):
    task = TASKS.build("multi30k", source_lang="de", target_lang="en")
    rows = task.split("test")
    assert rows[0]["references"] == ["A dog runs."]
    assert "Ein Hund läuft." in rows[0]["prompt"] and "German" in rows[0]["prompt"]
    reverse = TASKS.build("multi30k", source_lang="en", target_lang="de", instruction=None)
    assert reverse.split("train")[1] == {
        "prompt": "Two men.",
        "references": ["Zwei Männer."],
        "meta": {"source": "Two men."},
    }
    assert task.metrics == ["chrf", "bleu"]


def test_multi30k_misaligned_and_missing(multi30k_root):
    write_gz(multi30k_root / "val.en.gz", ["only one line"])
    task = TASKS.build("multi30k")
    with pytest.raises(TaskDataError, match=r"val.de.gz: 2 source lines but 1 target lines"):
        task.split("val")
    (multi30k_root / "train.de.gz").unlink()
    with pytest.raises(TaskDataError, match=r"missing file .*train\.de\.gz"):
        task.split("train")
    with pytest.raises(TaskDataError, match="no split 'dev'"):
        task.split("dev")


@pytest.mark.skipif(
    not (Path(os.environ.get("RL4TEXT_DATA", "/nonexistent")) / "multi30k").is_dir(),
    reason="RL4TEXT_DATA with multi30k/ not available",
)
def test_multi30k_real_files():
    task = TASKS.build("multi30k")
    assert len(task.split("train")) == 29000
    assert len(task.split("val")) == 1014
    assert len(task.split("test")) == 1000


def test_jsonl_task(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(
        json.dumps({"src": "hello", "tgt": "hallo", "id": 3})
        + "\n\n"
        + json.dumps({"src": "a", "tgt": ["b", "c"]})
        + "\n"
    )
    task = TASKS.build(
        "jsonl", files={"train": str(path)}, prompt_field="src", reference_field="tgt", template="Q: {text}"
    )
    rows = task.split("train")
    assert rows[0] == {"prompt": "Q: hello", "references": ["hallo"], "meta": {"id": 3}}
    assert rows[1]["references"] == ["b", "c"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"src": "x"}\n', r"line 1: missing field 'tgt'"),
        ('{"src": "x", "tgt": "y"}\nnot json\n', r"line 2: not valid JSON"),
        ('{"src": "", "tgt": "y"}\n', r"line 1: field 'prompt' is missing or empty"),
        ('{"src": "x", "tgt": []}\n', r"line 1: field 'references' must be a non-empty list"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    task = TASKS.build("jsonl", files={"train": str(path)}, prompt_field="src", reference_field="tgt")
    with pytest.raises(TaskDataError, match=message) as err:
        task.split("train")
    assert "bad.jsonl" in str(err.value)
