"""rl4text label: agreement maths against hand-worked tables, the project builder, the store (history, skip,
undo, overlap, restart), the JSON API and its security, 4 concurrent annotators, stats, and the export read
back by ``rl4text rm train``'s readers."""

import json
import math
import threading

import pytest
from starlette.testclient import TestClient

from rl4text.cli import main
from rl4text.label.agreement import cohen_kappa, krippendorff_alpha, pair_label, wilson_interval
from rl4text.label.app import create_app, serve_checks
from rl4text.label.export import export, majority_pairs, rankings_from_pairs
from rl4text.label.project import new_project
from rl4text.label.stats import project_stats, win_rates
from rl4text.label.store import LabelError, Store
from rl4text.rm.data import read_pairs, read_rankings
from rl4text.tasks import TaskDataError

# --- maths, by hand ------------------------------------------------------------------------------------------

# 3 annotators x 6 units, labels A / B / T(ie), None = not rated
X = ["A", "A", "B", "T", "A", "B"]
Y = ["A", "A", "B", "B", None, "B"]
Z = ["A", "B", None, "B", None, "T"]


def test_cohen_kappa_hand_worked():
    # X vs Y on the 5 shared units: X = A A B T B, Y = A A B B B. p_o = 4/5.
    # own marginals: X (A 2/5, B 2/5, T 1/5), Y (A 2/5, B 3/5): p_e = 4/25 + 6/25 = 2/5 -> kappa = (4/5-2/5)/(3/5) = 2/3
    # (Scott's pi, pooling the marginals, would give (0.8 - 0.42) / 0.58 = 0.655; a missing rating counted as a
    # category would give another number again)
    assert cohen_kappa(X, Y) == pytest.approx(2 / 3, abs=1e-12)
    # X vs Z on units 1, 2, 4, 6: X = A A T B, Z = A B B T: p_o = 1/4; p_e = .5*.25 + .25*.5 + .25*.25 = .3125
    # kappa = (.25 - .3125) / .6875 = -1/11 (the tie category matters: it makes unit 6 a disagreement)
    assert cohen_kappa(X, Z) == pytest.approx(-1 / 11, abs=1e-12)
    assert math.isnan(cohen_kappa(["A", "A"], ["A", "A"]))  # chance agreement 1: undefined
    assert math.isnan(cohen_kappa(["A", None], ["A", "B"]))  # one shared unit
    with pytest.raises(ValueError, match="differ in length"):
        cohen_kappa(["A"], ["A", "B"])


def test_krippendorff_alpha_hand_worked():
    # Coincidences (ordered pairs of values from different raters in a unit, weight 1/(m_u - 1)); unit 5 has one
    # rating and no pairable value. u1 AAA: o_AA += 3; u2 AAB: o_AA += 1, o_AB = o_BA += 1; u3 BB: o_BB += 2;
    # u4 TBB and u6 BBT: o_BB += 1, o_BT = o_TB += 1 each. n_A = 5, n_B = 7, n_T = 2, n = 14.
    # alpha = 1 - (n - 1) * sum_{c!=k} o_ck / sum_{c!=k} n_c n_k = 1 - 13 * 6 / (2 * (35 + 10 + 14)) = 40/118
    assert krippendorff_alpha([X, Y, Z]) == pytest.approx(40 / 118, abs=1e-9)
    # counting unit 5's lone rating (n = 15, n_A = 6) would give 1 - 14*6/(2*(42+12+14)) = 0.382: not what we get
    assert krippendorff_alpha([X, Y, Z]) != pytest.approx(1 - 14 * 6 / 136, abs=1e-3)
    assert math.isnan(krippendorff_alpha([["A", "A"], ["A", "A"]]))  # one category: undefined
    assert math.isnan(krippendorff_alpha([["A", None], [None, "B"]]))  # nothing pairable


def test_wilson_interval_hand_worked():
    # 8/10: center (0.8 + z^2/20) / (1 + z^2/10) = 0.716738, half-width 0.226575 (Wald would give [0.552, 1.048])
    lo, hi = wilson_interval(8, 10)
    assert (lo, hi) == (pytest.approx(0.490162, abs=1e-5), pytest.approx(0.943318, abs=1e-5))
    assert wilson_interval(0, 4)[0] == 0.0 and wilson_interval(0, 4)[1] == pytest.approx(0.489891, abs=1e-5)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_pair_label():
    assert pair_label([2, 0, 1], False, 0, 1) == "first"
    assert pair_label([2, 0, 1], False, 0, 2) == "second"
    assert pair_label([0, 1], True, 0, 1) == "tie"


def test_win_rates_aggregate_each_item_first():
    # items i1..i4 compare system s (candidate 0) with t (candidate 1); judgments rank best first
    items = {
        f"i{k}": {"gold": None, "candidates": [{"system": "s"}, {"system": "t"}], "references": []}
        for k in range(1, 5)
    }

    def j(item, ann, ranking, tie=False):
        return {"item": item, "annotator": ann, "ranking": ranking, "tie": tie, "shown": [0, 1]}

    judgments = [
        j("i1", "a", [0, 1]), j("i1", "b", [0, 1]), j("i1", "c", [1, 0]),  # s 2/3: an s win
        j("i2", "a", [0, 1]), j("i2", "b", [1, 0], tie=True),  # s (1 + 1/2)/2 = 3/4: a win (the tie counts half)
        j("i3", "a", [0, 1]), j("i3", "b", [1, 0]),  # 1/2: a tie item
        j("i4", "a", [1, 0]),  # a loss
    ]  # fmt: skip
    s = win_rates(items, judgments)["systems"]["s"]
    assert (s["wins"], s["losses"], s["ties"]) == (2, 1, 1)
    assert s["win_rate"] == pytest.approx(2 / 3)  # ties left out; counting judgments instead would give 4/7
    assert s["score"] == pytest.approx(2.5 / 4)
    assert s["win_rate_ci95"] == pytest.approx(wilson_interval(2, 3))
    t = win_rates(items, judgments)["systems"]["t"]
    assert (t["wins"], t["losses"], t["win_rate"]) == (1, 2, pytest.approx(1 / 3))


# --- a project -------------------------------------------------------------------------------------------------


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def make_project(tmp_path, per_item=2):
    tmp_path.mkdir(parents=True, exist_ok=True)
    start = [{"prompt": f"p{i}", "completion": f"start {i}", "references": [f"ref {i}"]} for i in range(6)]
    trained = [{"prompt": f"p{i}", "completion": f"trained {i}"} for i in range(6)]
    trained[5]["completion"] = "<script>window.pwned=1</script><b>bold</b>"
    gold = [{"prompt": "g", "chosen": "good answer", "rejected": "bad answer"}]
    summary = new_project(
        tmp_path / "proj",
        [write_jsonl(tmp_path / "a.jsonl", start), write_jsonl(tmp_path / "b.jsonl", trained)],
        names=["start", "trained"],
        per_item=per_item,
        gold=write_jsonl(tmp_path / "gold.jsonl", gold),
        show_references=True,
    )
    assert summary == {"items": 6, "gold": 1, "prompts_left_out": 0, "systems": ["start", "trained"]}
    return tmp_path / "proj"


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path)


def test_new_project_modes_and_errors(tmp_path):
    a = write_jsonl(
        tmp_path / "a.jsonl", [{"prompt": "p", "completion": "x"}, {"prompt": "q", "completion": "same"}]
    )
    b = write_jsonl(
        tmp_path / "b.jsonl", [{"prompt": "p", "completion": "y"}, {"prompt": "q", "completion": "same"}]
    )
    c = write_jsonl(
        tmp_path / "samples.jsonl",
        [
            {"iteration": 0, "prompt": "p", "completion": "z"},
            {"iteration": 10, "prompt": "p", "completion": "w"},
        ],
    )
    s = new_project(tmp_path / "rank", [a, b, c], mode="ranking")
    assert s["items"] == 1 and s["prompts_left_out"] == 1  # q: all the same text
    assert s["systems"] == sorted([a, b, f"{c}@0", f"{c}@10"])
    items = Store(tmp_path / "rank").items()
    assert [len(it["candidates"]) for it in items.values()] == [4]
    assert new_project(tmp_path / "pw", [a, b, c])["items"] == 6  # C(4, 2) pairs of p
    with pytest.raises(LabelError, match="a project is already there"):
        new_project(tmp_path / "pw", [a, b])
    with pytest.raises(TaskDataError, match=r"bad\.jsonl line 2: field 'completion'"):
        new_project(
            tmp_path / "x",
            [write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "completion": "x"}, {"prompt": "p"}])],
        )
    with pytest.raises(LabelError, match="no prompt has two different completions"):
        new_project(tmp_path / "y", [a])
    gold = write_jsonl(tmp_path / "g.jsonl", [{"prompt": "g", "completions": ["1", "2", "3"]}])
    with pytest.raises(TaskDataError, match="a pairwise project needs gold pairs"):
        new_project(tmp_path / "z", [a, b], gold=gold)
    with pytest.raises(LabelError, match="not a label project"):
        Store(tmp_path / "nothing")


def test_store_history_skip_undo_overlap_and_restart(project):
    store = Store(project)
    first = store.next_item("ann")
    assert store.next_item("ann")["item"] == first["item"]  # unfinished item first: a reload resumes
    store.judge(first["item"], "ann", [0, 1])
    again = store.judge(first["item"], "ann", [1, 0], comment="changed my mind")
    assert again["replaced"] is True
    rows = store.judgments(status=None)
    assert [r["status"] for r in rows] == ["replaced", "current"] and rows[1]["comment"] == "changed my mind"
    # ranking is stored in canonical candidate order: the shown order maps back
    shown = store.shown_order("ann", first["item"], 2)
    assert rows[1]["ranking"] == [shown[1], shown[0]] and rows[1]["shown"] == shown
    second = store.next_item("ann")["item"]
    store.skip(second, "ann")
    assert store.undo("ann")["item"] == second  # the skip is undone first (it is newer)
    assert store.next_item("ann")["item"] == second
    assert store.undo("ann")["item"] == first["item"]  # then the judgment: kept as 'undone'
    assert [r["status"] for r in store.judgments(status=None)] == ["replaced", "undone"]
    assert store.next_item("ann")["item"] == first["item"]
    store.judge(first["item"], "ann", [0, 1])
    # a restarted server (a new Store on the same file) sees the same state
    fresh = Store(project)
    assert fresh.next_item("ann")["item"] == second and fresh.progress("ann")["judged"] == 1
    # overlap: per_item = 2, so after two annotators a third gets only the gold item
    for name in ("x", "y"):
        while (it := fresh.next_item(name))["item"]:
            fresh.judge(it["item"], name, [0, 1])
    assert fresh.next_item("z")["item"] == "g001"
    fresh.judge("g001", "z", [0, 1])
    assert fresh.next_item("z")["item"] == ""  # every item has its 2 judgments: z is done
    assert fresh.next_item("ann")["item"] == second  # ann's unfinished item is still theirs
    with pytest.raises(LabelError, match="'order' must list the 2 candidate positions"):
        fresh.judge("g001", "z", [0, 0])
    with pytest.raises(LabelError, match="annotator name"):
        fresh.next_item("bad name!")
    with pytest.raises(LabelError, match="no item"):
        fresh.judge("nope", "z", [0, 1])


# --- the API and its security ----------------------------------------------------------------------------------


def test_api_next_judge_and_escaping(project):
    client = TestClient(create_app(project))
    seen = []
    while (r := client.get("/api/next", params={"annotator": "ann"}).json())["item"]:
        assert set(r) >= {"item", "prompt", "candidates", "progress"} and "system" not in json.dumps(r)
        seen.append(r)
        order = [1, 0] if "<script>" in r["candidates"][1]["text"] else [0, 1]
        resp = client.post(
            "/api/judgments", json={"item": r["item"], "annotator": "ann", "order": order, "tie": False}
        )
        assert resp.status_code == 200 and resp.json()["ok"]
    assert len(seen) == 7 and r["progress"]["judged"] == 7
    refs = {r["prompt"]: r["references"] for r in seen}
    assert refs["p3"] == ["ref 3"] and refs["g"] == []  # shown (show_references), gold items have none
    # the page escapes every text: the script shows as text, never as markup
    client2 = TestClient(create_app(project))
    while (r := client2.get("/api/next", params={"annotator": "b"}).json())["item"]:
        if any("<script>" in c["text"] for c in r["candidates"]):
            break
        client2.post("/api/judgments", json={"item": r["item"], "annotator": "b", "order": [0, 1]})
    page = client2.get("/annotate", params={"annotator": "b"})
    assert page.status_code == 200
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in page.text
    assert "<script>window" not in page.text and "<b>bold" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["referrer-policy"] == "no-referrer"
    bad = client2.get("/annotate", params={"annotator": "<img src=x onerror=alert(1)>"})
    assert bad.status_code == 400 and "<img" not in bad.text and "&lt;img" in bad.text


def test_api_posts_are_same_origin_json_only(project):
    client = TestClient(create_app(project))
    item = client.get("/api/next", params={"annotator": "a"}).json()["item"]
    body = {"item": item, "annotator": "a", "order": [0, 1]}
    form = client.post("/api/judgments", data={"item": item, "annotator": "a"})
    assert form.status_code == 415 and "application/json" in form.json()["error"]
    plain = client.post("/api/judgments", content=json.dumps(body), headers={"content-type": "text/plain"})
    assert plain.status_code == 415  # the CORS-"simple" type a cross-site page could send without preflight
    cross = client.post("/api/judgments", json=body, headers={"origin": "http://evil.example"})
    assert cross.status_code == 403 and "cross-origin" in cross.json()["error"]
    site = client.post("/api/judgments", json=body, headers={"sec-fetch-site": "cross-site"})
    assert site.status_code == 403
    same = client.post("/api/judgments", json=body, headers={"origin": "http://testserver"})
    assert same.status_code == 200
    assert (
        client.post(
            "/api/judgments", content=b"[1]", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    assert client.post("/api/judgments", json={**body, "order": [5]}).status_code == 400
    assert client.get("/api/judgments").status_code == 405  # no GET that writes
    assert len(Store(project).judgments(status=None)) == 1  # only the same-origin JSON one landed


def test_token_and_host_checks(project):
    assert serve_checks("127.0.0.1", 8765, None) == {"127.0.0.1:8765", "localhost:8765", "[::1]:8765"}
    with pytest.raises(LabelError, match="pass --token SECRET"):
        serve_checks("0.0.0.0", 8765, None)
    assert serve_checks("0.0.0.0", 8765, "s3cret") is None
    locked = TestClient(create_app(project, token="s3cret"))
    assert locked.get("/api/next", params={"annotator": "a"}).status_code == 403
    assert locked.get("/api/next", params={"annotator": "a", "token": "wrong"}).status_code == 403
    assert locked.get("/api/next", params={"annotator": "a", "token": "s3cret"}).json()["item"]
    item = locked.get("/api/next", params={"annotator": "a"}, headers={"x-label-token": "s3cret"}).json()[
        "item"
    ]
    body = {"item": item, "annotator": "a", "order": [0, 1]}
    assert locked.post("/api/judgments", json=body).status_code == 403
    assert locked.post("/api/judgments", json=body, headers={"x-label-token": "s3cret"}).status_code == 200
    page = locked.get("/annotate", params={"annotator": "a", "token": "s3cret"})
    assert 'data-token="s3cret"' in page.text
    rebind = TestClient(create_app(project, allowed_hosts={"127.0.0.1:8765"}))
    assert rebind.get("/api/next", params={"annotator": "a"}).status_code == 400  # Host: testserver
    ok = rebind.get("/api/next", params={"annotator": "a"}, headers={"host": "127.0.0.1:8765"})
    assert ok.status_code == 200


def test_four_concurrent_annotators_lose_nothing(tmp_path):
    rows_a = [{"prompt": f"p{i}", "completion": f"a{i}"} for i in range(30)]
    rows_b = [{"prompt": f"p{i}", "completion": f"b{i}"} for i in range(30)]
    folder = tmp_path / "proj"
    new_project(
        folder,
        [write_jsonl(tmp_path / "a.jsonl", rows_a), write_jsonl(tmp_path / "b.jsonl", rows_b)],
        per_item=4,
    )
    app = create_app(folder)
    posted: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)
    errors = []

    def annotate(name):
        try:
            client = TestClient(app)  # one event loop per thread: requests really overlap
            posted[name] = []
            barrier.wait()
            while (r := client.get("/api/next", params={"annotator": name}).json())["item"]:
                resp = client.post(
                    "/api/judgments", json={"item": r["item"], "annotator": name, "order": [1, 0]}
                )
                assert resp.status_code == 200, resp.text
                posted[name].append(r["item"])
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=annotate, args=(f"ann{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stored = Store(folder).judgments()
    assert len(stored) == 4 * 30 == sum(len(v) for v in posted.values())
    assert {(j["annotator"], j["item"]) for j in stored} == {(n, i) for n, v in posted.items() for i in v}


# --- stats and export -------------------------------------------------------------------------------------------


def judge_all(project, prefer, names=("a1", "a2", "a3")):
    """Every annotator judges everything, preferring the candidate ``prefer(text)`` scores higher."""
    store = Store(project)
    for name in names:
        while (r := store.next_item(name))["item"]:
            scores = [prefer(name, c["text"]) for c in r["candidates"]]
            tie = scores[0] == scores[1]
            store.judge(r["item"], name, [0, 1] if scores[0] >= scores[1] else [1, 0], tie=tie)
    return store


def test_stats_and_export_read_back_by_rm_readers(tmp_path):
    project = make_project(tmp_path / "three", per_item=3)

    # a1 and a2 prefer "trained" texts; a3 prefers "start" ones and fails the gold item
    def prefer(name, text):
        if text in ("good answer", "bad answer"):
            return (text == "good answer") != (name == "a3")
        return text.startswith("start") if name == "a3" else not text.startswith("start")

    judge_all(project, prefer)
    s = project_stats(project)
    assert s["project"]["judgments"] == 3 * 7 and s["project"]["items_complete"] == 6
    assert s["annotators"]["a1"]["gold_accuracy"] == 1.0 and s["annotators"]["a3"]["gold_accuracy"] == 0.0
    kappa = s["agreement"]["cohen_kappa"]
    # a1 and a2 always say "second" (trained is candidate 1): chance agreement 1, kappa undefined (not 1)
    assert math.isnan(kappa["a1 / a2"]["kappa"]) and kappa["a1 / a3"]["kappa"] == 0.0
    # each unit: second, second, first -> o_ss = 6, o_sf = o_fs = 6, n_s = 12, n_f = 6, n = 18:
    # alpha = 1 - 17 * 12 / (2 * 12 * 6) = -5/12
    assert s["agreement"]["krippendorff_alpha_nominal"] == pytest.approx(-5 / 12)
    trained = s["win_rates"]["systems"]["trained"]
    assert (trained["wins"], trained["losses"]) == (6, 0)  # 2 of 3 annotators per item
    assert 0.0 <= s["overall"]["first_shown_rate"] <= 1.0
    assert main(["label", "stats", str(project)]) == 0
    assert json.loads((project / "stats.json").read_text())["win_rates"]["systems"]["trained"]["wins"] == 6
    assert "Krippendorff" in (project / "stats.md").read_text()

    out = tmp_path / "pairs.jsonl"
    assert main(["label", "export", str(project), "--format", "pairs", "--output", str(out)]) == 0
    groups = read_pairs(out)  # exactly what `rl4text rm train` (data.format: pairs) reads
    assert len(groups) == 6 and not any(g.completions[g.pairs[0][0]].startswith("start") for g in groups)
    assert groups[0].references == ["ref 0"]
    # a3 disagrees everywhere: at min agreement 0.7 nothing survives (2/3 < 0.7) ...
    with pytest.raises(LabelError, match="nothing written"):
        export(project, "pairs", tmp_path / "none.jsonl", min_agreement=0.7)
    # ... unless a3 (failed gold) is dropped first
    pairs, report = majority_pairs(project, min_agreement=0.7, drop_failed_gold=True)
    assert report["dropped_annotators"] == ["a3"] and len(pairs) == 6
    ranks = tmp_path / "rankings.jsonl"
    assert main(["label", "export", str(project), "--format", "rankings", "--output", str(ranks)]) == 0
    assert len(read_rankings(ranks)) == 6


def test_rankings_from_pairs_copeland():
    pairs = [
        {"prompt": "p", "chosen": "a", "rejected": "b"},
        {"prompt": "p", "chosen": "a", "rejected": "c"},
        {"prompt": "p", "chosen": "c", "rejected": "b"},
        {"prompt": "q", "chosen": "x", "rejected": "y"},
        {"prompt": "q", "chosen": "y", "rejected": "z"},
        {"prompt": "q", "chosen": "z", "rejected": "x"},  # a cycle: no ranking
    ]
    assert rankings_from_pairs(pairs) == [{"prompt": "p", "completions": ["a", "c", "b"], "ranks": [1, 2, 3]}]
    tied = [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "c", "rejected": "d"}]
    assert rankings_from_pairs(tied)[0]["ranks"] == [1, 1, 3, 3]


def test_ranking_mode_api(tmp_path):
    files = [
        write_jsonl(tmp_path / f"{k}.jsonl", [{"prompt": "p", "completion": f"text {k}"}]) for k in "abc"
    ]
    new_project(tmp_path / "proj", files, names=["a", "b", "c"], mode="ranking", per_item=2)
    client = TestClient(create_app(tmp_path / "proj"))
    r = client.get("/api/next", params={"annotator": "r"}).json()
    assert len(r["candidates"]) == 3 and r["mode"] == "ranking"
    best_first = sorted(range(3), key=lambda i: r["candidates"][i]["text"], reverse=True)  # c > b > a
    assert (
        client.post(
            "/api/judgments", json={"item": r["item"], "annotator": "r", "order": best_first}
        ).status_code
        == 200
    )
    assert (
        client.post("/api/judgments", json={"item": r["item"], "annotator": "r", "order": [0, 1]}).status_code
        == 400
    )
    wr = project_stats(tmp_path / "proj")["win_rates"]["systems"]
    assert (wr["c"]["wins"], wr["b"]["wins"], wr["a"]["wins"]) == (2, 1, 0)
    page = client.get("/annotate", params={"annotator": "other"})
    assert page.text.count('class="rank"') == 3


def test_cli_new_and_errors(tmp_path, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "p", "completion": "x"}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "p", "completion": "y"}])
    assert main(["label", "new", str(tmp_path / "proj"), "--from", a, b, "--names", "s", "t"]) == 0
    assert '"items": 1' in capsys.readouterr().out
    assert main(["label", "new", str(tmp_path / "proj"), "--from", a, b]) == 2
    assert "a project is already there" in capsys.readouterr().err
    assert main(["label", "stats", str(tmp_path / "none")]) == 2
    assert "not a label project" in capsys.readouterr().err
    assert main(["label", "serve", str(tmp_path / "proj"), "--host", "0.0.0.0"]) == 2
    assert "--token" in capsys.readouterr().err
