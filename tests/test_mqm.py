"""The expert MQM reader (``data.format: mqm``): a hand-made fixture in the layout of ``mqm_ted_ende/``
(DATA.md): texts from the error rows with ``<v>…</v>`` removed, scores from the averaged-score file, the
``ref-A`` / ``ref`` alias, unrated systems skipped, one group per segment, malformed files named."""

import os
import shutil
from pathlib import Path

import pytest

from rl4text.rm.config import load_rm_config
from rl4text.rm.data import load_groups, split_groups
from rl4text.tasks import TaskDataError
from rl4text.tasks.judgments import read_mqm

FIXTURE = Path(__file__).parent / "fixtures" / "mqm_ted_ende"
DATA = Path(os.environ.get("RL4TEXT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def test_read_mqm_records():
    recs = read_mqm(FIXTURE)
    assert [r["seg_id"] for r in recs] == ["1", "2", "3", "10"]  # by document, then segment number
    seg1 = recs[0]
    assert seg1["source"] == "The cat sat." and seg1["doc"] == "talk.1"
    assert seg1["systems"]["sysA"] == {"text": "Die Katze saß.", "score": -6.0, "raters": ["rater1"]}
    assert seg1["systems"]["ref"]["score"] == 0.0  # "ref-A" in the score file
    assert recs[1]["source"] == "It rained."  # the <v> mark in the source is removed too
    assert "sysC" not in recs[1]["systems"]  # None = not rated
    assert sorted(recs[3]["systems"]) == ["sysA"]  # ref of segment 10 has no score


def test_load_mqm_groups_by_segment_with_ref_as_reference():
    groups = load_groups("mqm", FIXTURE)
    # segments 3 and 10 have no (scored) reference text: dropped
    assert [g.key for g in groups] == ["segment-1", "segment-2"]
    g1 = groups[0]
    assert g1.prompt == "The cat sat."
    assert g1.names == ["sysA", "sysB", "sysC"]
    assert g1.completions == ["Die Katze saß.", "Die Katze saß.", "Eine Katze saß."]
    assert g1.scores == [-6.0, 0.0, -1.0]
    assert g1.references == ["Die Katze saß dort."]
    assert g1.preference_pairs() == [(1, 0), (2, 0), (1, 2)]
    # without a reference system, ref is an ordinary completion and segment 3 comes back
    plain = load_groups("mqm", FIXTURE, reference=None)
    assert [g.key for g in plain] == ["segment-1", "segment-2", "segment-3"]
    assert plain[0].names == ["ref", "sysA", "sysB", "sysC"] and plain[0].references == []
    assert [g.key for g in load_groups("mqm", FIXTURE, reference=None, min_systems=1)][-1] == "segment-10"


def test_mqm_split_never_puts_a_segment_on_both_sides():
    groups = load_groups("mqm", FIXTURE, reference=None)
    train, held = split_groups(groups, 0.34, seed=0)
    assert len(held) == 1 and len(train) == 2
    assert not {g.key for g in train} & {g.key for g in held}


def test_mqm_config_accepts_the_format(tmp_path):
    cfg = tmp_path / "rm.yaml"
    cfg.write_text(f"data: {{format: mqm, path: {FIXTURE}, options: {{reference: ref}}}}\n")
    assert load_rm_config(cfg).data.format == "mqm"


def _copy(tmp_path, name, edit):
    folder = tmp_path / "mqm"
    shutil.copytree(FIXTURE, folder)
    path = folder / name
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize(
    "name, edit, message",
    [
        ("mqm_ted_ende.tsv", lambda ls: ls.__setitem__(0, "system\tdoc\tseg_id"), "line 1: header lacks"),
        ("mqm_ted_ende.tsv", lambda ls: ls.__setitem__(3, "sysA\ttalk.1\t1\t1"), "line 4: 4 tab-separated"),
        (
            "mqm_ted_ende.tsv",
            lambda ls: ls.__setitem__(2, ls[2].replace("Katze <v>saß</v>", "Hund saß")),
            "line 3: system 'sysA', segment 1: the target differs",
        ),
        (
            "mqm_ted_ende.tsv",
            lambda ls: ls.__setitem__(4, ls[4].replace("talk.1", "talk.9")),
            "line 5: segment 1 is in document 'talk.9'",
        ),
        (
            "mqm_ted_ende.avg_seg_scores.tsv",
            lambda ls: ls.__setitem__(2, "sysB\tbad 1"),
            "line 3: mqm_avg_score",
        ),
        (
            "mqm_ted_ende.avg_seg_scores.tsv",
            lambda ls: ls.__setitem__(2, "sysB -1"),
            "line 3: expected 3 fields",
        ),
    ],
)
def test_mqm_malformed_files_name_file_and_line(tmp_path, name, edit, message):
    folder = _copy(tmp_path, name, edit)
    with pytest.raises(TaskDataError, match=message) as info:
        read_mqm(folder)
    assert name in str(info.value)


def test_mqm_missing_files(tmp_path):
    with pytest.raises(TaskDataError, match="missing folder"):
        read_mqm(tmp_path / "nowhere")
    (tmp_path / "mqm_ted_ende.tsv").write_text((FIXTURE / "mqm_ted_ende.tsv").read_text())
    with pytest.raises(TaskDataError, match=r"mqm_ted_ende\.avg_seg_scores\.tsv"):
        read_mqm(tmp_path)


@pytest.mark.skipif(not (DATA / "mqm_ted_ende").is_dir(), reason="needs ../shared/data/mqm_ted_ende")
def test_real_mqm_counts():
    groups = load_groups("mqm", DATA / "mqm_ted_ende")
    # DATA.md: 529 segments with text, 6,877 (system, segment) items with text and score besides ref
    assert len(groups) == 529
    assert sum(len(g.completions) for g in groups) == 6877
    assert all(len(g.references) == 1 for g in groups)
