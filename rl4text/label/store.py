"""The project database: items, candidates, judgments (with history), skips and serve times, in SQLite (WAL).

Every call opens its own connection and commits before it returns, so a judgment is on disk when the API
answers, concurrent annotators (threads or processes) serialise on SQLite's write lock instead of losing
rows, and a restarted server resumes from the file alone. Candidates are stored in a canonical order; each
annotator sees an item's candidates in an order drawn from (project secret, annotator, item), so the position
a system appears in is random across annotators and items (position bias is then measurable, and the
shown order is stored with each judgment).

Judgment rows are never deleted: re-judging an item marks the annotator's earlier row ``replaced``, undo
marks it ``undone``; ``current`` rows are the judgments in force.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sqlite3
import time
from pathlib import Path

DB_NAME = "label.sqlite"
RESERVE_S = 600.0
"""An item served to an annotator counts toward its overlap for this long (so concurrent annotators do not
all pick the same last slot); a judgment or a skip releases it."""
MAX_COMMENT = 2000
ANNOTATOR = re.compile(r"^[\w.@-]{1,64}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, prompt TEXT NOT NULL, refs TEXT NOT NULL, gold TEXT);
CREATE TABLE IF NOT EXISTS candidates (
    item TEXT NOT NULL, idx INTEGER NOT NULL, text TEXT NOT NULL, system TEXT NOT NULL,
    PRIMARY KEY (item, idx));
CREATE TABLE IF NOT EXISTS judgments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, item TEXT NOT NULL, annotator TEXT NOT NULL,
    ranking TEXT NOT NULL, tie INTEGER NOT NULL, comment TEXT NOT NULL, shown TEXT NOT NULL,
    seconds REAL, created REAL NOT NULL, status TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS judgments_current ON judgments (annotator, item, status);
CREATE TABLE IF NOT EXISTS skips (
    item TEXT NOT NULL, annotator TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (item, annotator));
CREATE TABLE IF NOT EXISTS views (
    item TEXT NOT NULL, annotator TEXT NOT NULL, served REAL NOT NULL, PRIMARY KEY (item, annotator));
"""


class LabelError(ValueError):
    """A request or a project that cannot be used; the message says what would be valid."""


def check_annotator(name) -> str:
    if not isinstance(name, str) or not ANNOTATOR.match(name):
        raise LabelError(
            f"annotator name {name!r} is not valid: use 1-64 letters, digits, '_', '-', '.' or '@'"
        )
    return name


class Store:
    """One project's database at ``folder/label.sqlite``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / DB_NAME
        if not self.path.is_file():
            raise LabelError(
                f"{self.folder} is not a label project (no {DB_NAME}); make one with `rl4text label new`"
            )
        self.settings = {k: json.loads(v) for k, v in self._query("SELECT key, value FROM settings")}

    # ------------------------------------------------------------------------------------------ plumbing

    def connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        con.execute("PRAGMA busy_timeout = 30000")
        con.execute("PRAGMA foreign_keys = ON")
        return con

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        con = self.connect()
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    @classmethod
    def create(cls, folder: str | Path, settings: dict, items: list[dict]) -> Store:
        """Write a new project: ``items`` are ``{"id", "prompt", "references", "gold" (order or None),
        "candidates": [{"text", "system"}, ...]}``. Refuses to touch an existing database."""
        folder = Path(folder)
        path = folder / DB_NAME
        if path.exists():
            raise LabelError(
                f"{path} exists: a project is already there (its judgments are kept); choose another folder"
            )
        folder.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path, isolation_level=None)
        try:
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise LabelError(f"{path}: SQLite refused WAL mode (got {mode!r}); use a local disk")
            con.executescript(SCHEMA)
            con.execute("BEGIN IMMEDIATE")
            con.executemany(
                "INSERT INTO settings VALUES (?, ?)", [(k, json.dumps(v)) for k, v in settings.items()]
            )
            for seq, it in enumerate(items):
                gold = None if it.get("gold") is None else json.dumps(it["gold"])
                con.execute(
                    "INSERT INTO items VALUES (?, ?, ?, ?, ?)",
                    (it["id"], seq, it["prompt"], json.dumps(it.get("references", [])), gold),
                )
                con.executemany(
                    "INSERT INTO candidates VALUES (?, ?, ?, ?)",
                    [(it["id"], i, c["text"], c["system"]) for i, c in enumerate(it["candidates"])],
                )
            con.execute("COMMIT")
        finally:
            con.close()
        return cls(folder)

    # --------------------------------------------------------------------------------------------- reads

    def items(self) -> dict[str, dict]:
        """``{id: {"id", "prompt", "references", "gold", "candidates": [{"text", "system"}]}}`` in order."""
        out: dict[str, dict] = {}
        for iid, prompt, refs, gold in self._query("SELECT id, prompt, refs, gold FROM items ORDER BY seq"):
            out[iid] = {
                "id": iid,
                "prompt": prompt,
                "references": json.loads(refs),
                "gold": None if gold is None else json.loads(gold),
                "candidates": [],
            }
        for iid, text, system in self._query("SELECT item, text, system FROM candidates ORDER BY item, idx"):
            out[iid]["candidates"].append({"text": text, "system": system})
        return out

    def judgments(self, status: str | None = "current") -> list[dict]:
        """Judgment rows (``ranking``/``shown`` as canonical candidate indices), oldest first."""
        sql = "SELECT id, item, annotator, ranking, tie, comment, shown, seconds, created, status FROM judgments"
        rows = self._query(
            sql + (" WHERE status = ?" if status else "") + " ORDER BY id", (status,) if status else ()
        )
        keys = (
            "id",
            "item",
            "annotator",
            "ranking",
            "tie",
            "comment",
            "shown",
            "seconds",
            "created",
            "status",
        )
        out = [dict(zip(keys, r)) for r in rows]
        for r in out:
            r["ranking"], r["shown"], r["tie"] = (
                json.loads(r["ranking"]),
                json.loads(r["shown"]),
                bool(r["tie"]),
            )
        return out

    def skips(self) -> list[tuple[str, str]]:
        return [(a, i) for i, a in self._query("SELECT item, annotator FROM skips")]

    def shown_order(self, annotator: str, item: str, n: int) -> list[int]:
        """Canonical candidate indices in the order this annotator sees them (stable across restarts)."""
        seed = hashlib.sha256(f"{self.settings['secret']}|{annotator}|{item}".encode()).hexdigest()
        order = list(range(n))
        random.Random(seed).shuffle(order)
        return order

    def _queue_key(self, annotator: str, item: str) -> str:
        return hashlib.sha256(f"{self.settings['secret']}|queue|{annotator}|{item}".encode()).hexdigest()

    # ------------------------------------------------------------------------------------------ the queue

    def next_item(self, annotator: str) -> dict:
        """The item to show ``annotator`` next (their unfinished one first, so a reload or a restart
        resumes), or ``{"item": ""}`` when they are done. Records the serve time (for time per item)."""
        check_annotator(annotator)
        now = time.time()
        con = self.connect()
        con.execute(
            "PRAGMA synchronous = NORMAL"
        )  # a serve time lost to a power cut is harmless; judgments sync
        try:
            con.execute("BEGIN IMMEDIATE")
            done = {
                i
                for (i,) in con.execute(
                    "SELECT item FROM judgments WHERE annotator = ? AND status = 'current' "
                    "UNION SELECT item FROM skips WHERE annotator = ?",
                    (annotator, annotator),
                )
            }
            pending = [
                i
                for (i,) in con.execute(
                    "SELECT item FROM views WHERE annotator = ? ORDER BY served DESC", (annotator,)
                )
                if i not in done
            ]
            chosen = pending[0] if pending else self._pick(con, annotator, done, now)
            if chosen is not None:
                con.execute("INSERT OR REPLACE INTO views VALUES (?, ?, ?)", (chosen, annotator, now))
            con.execute("COMMIT")
        finally:
            con.close()
        progress = self.progress(annotator)
        if chosen is None:
            return {"item": "", "progress": progress}
        return {**self.render(annotator, chosen), "progress": progress}

    def _pick(self, con: sqlite3.Connection, annotator: str, done: set[str], now: float) -> str | None:
        per_item = int(self.settings["per_item"])
        taken: dict[str, int] = {}
        for (item,) in con.execute(
            "SELECT item FROM judgments WHERE status = 'current' AND annotator != ? "
            "UNION ALL SELECT v.item FROM views v WHERE v.annotator != ? AND v.served > ? AND NOT EXISTS ("
            " SELECT 1 FROM judgments j WHERE j.item = v.item AND j.annotator = v.annotator AND j.status = 'current')"
            " AND NOT EXISTS (SELECT 1 FROM skips s WHERE s.item = v.item AND s.annotator = v.annotator)",
            (annotator, annotator, now - RESERVE_S),
        ):
            taken[item] = taken.get(item, 0) + 1
        open_items = [
            iid
            for iid, gold in con.execute("SELECT id, gold FROM items")
            if iid not in done and (gold is not None or taken.get(iid, 0) < per_item)
        ]
        return min(open_items, key=lambda i: self._queue_key(annotator, i), default=None)

    def render(self, annotator: str, item: str) -> dict:
        """The item as the annotator sees it: candidates in their shown order, no system names."""
        rows = self._query("SELECT prompt, refs FROM items WHERE id = ?", (item,))
        if not rows:
            raise LabelError(f"no item {item!r} in this project")
        texts = [
            t for (t,) in self._query("SELECT text FROM candidates WHERE item = ? ORDER BY idx", (item,))
        ]
        out = {
            "item": item,
            "mode": self.settings["mode"],
            "prompt": rows[0][0],
            "candidates": [{"text": texts[i]} for i in self.shown_order(annotator, item, len(texts))],
        }
        if self.settings.get("show_references"):
            out["references"] = json.loads(rows[0][1])
        return out

    def progress(self, annotator: str) -> dict:
        judged = self._query(
            "SELECT COUNT(*) FROM judgments WHERE annotator = ? AND status = 'current'", (annotator,)
        )[0][0]
        skipped = self._query("SELECT COUNT(*) FROM skips WHERE annotator = ?", (annotator,))[0][0]
        return {
            "judged": judged,
            "skipped": skipped,
            "items": self._query("SELECT COUNT(*) FROM items")[0][0],
        }

    # ----------------------------------------------------------------------------------------- the writes

    def judge(self, item: str, annotator: str, order, tie=False, comment: str = "") -> dict:
        """Store a judgment: ``order`` = shown positions, best first (all of them; a pairwise item: 2).
        Replaces the annotator's earlier judgment of the item (kept as ``replaced``)."""
        check_annotator(annotator)
        n = (
            self._query("SELECT COUNT(*) FROM candidates WHERE item = ?", (item,))[0][0]
            if isinstance(item, str)
            else 0
        )
        if n == 0:
            raise LabelError(f"no item {item!r} in this project")
        if (
            not isinstance(order, list)
            or sorted(order) != list(range(n))
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in order)
        ):
            raise LabelError(
                f"item {item}: 'order' must list the {n} candidate positions 0..{n - 1} best first, got {order!r}"
            )
        if not isinstance(tie, bool):
            raise LabelError(f"'tie' must be true or false, got {tie!r}")
        if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
            raise LabelError(f"'comment' must be a string of at most {MAX_COMMENT} characters")
        shown = self.shown_order(annotator, item, n)
        ranking = [shown[i] for i in order]
        now = time.time()
        con = self.connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            served = con.execute(
                "SELECT served FROM views WHERE item = ? AND annotator = ?", (item, annotator)
            ).fetchone()
            replaced = con.execute(
                "UPDATE judgments SET status = 'replaced' WHERE item = ? AND annotator = ? AND status = 'current'",
                (item, annotator),
            ).rowcount
            cur = con.execute(
                "INSERT INTO judgments (item, annotator, ranking, tie, comment, shown, seconds, created, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'current')",
                (
                    item,
                    annotator,
                    json.dumps(ranking),
                    int(tie),
                    comment,
                    json.dumps(shown),
                    None if served is None else now - served[0],
                    now,
                ),
            )
            con.execute("DELETE FROM skips WHERE item = ? AND annotator = ?", (item, annotator))
            con.execute("COMMIT")
        finally:
            con.close()
        return {"ok": True, "judgment": cur.lastrowid, "replaced": bool(replaced)}

    def skip(self, item: str, annotator: str) -> dict:
        check_annotator(annotator)
        if not self._query("SELECT 1 FROM items WHERE id = ?", (item,)):
            raise LabelError(f"no item {item!r} in this project")
        con = self.connect()
        try:
            con.execute("INSERT OR REPLACE INTO skips VALUES (?, ?, ?)", (item, annotator, time.time()))
        finally:
            con.close()
        return {"ok": True}

    def undo(self, annotator: str) -> dict:
        """Take back the annotator's latest judgment or skip; that item is then served to them next."""
        check_annotator(annotator)
        now = time.time()
        con = self.connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            last_j = con.execute(
                "SELECT id, item, created FROM judgments WHERE annotator = ? AND status = 'current' "
                "ORDER BY id DESC LIMIT 1",
                (annotator,),
            ).fetchone()
            last_s = con.execute(
                "SELECT item, created FROM skips WHERE annotator = ? ORDER BY created DESC LIMIT 1",
                (annotator,),
            ).fetchone()
            item = None
            if last_s is not None and (last_j is None or last_s[1] >= last_j[2]):
                item = last_s[0]
                con.execute("DELETE FROM skips WHERE item = ? AND annotator = ?", (item, annotator))
            elif last_j is not None:
                item = last_j[1]
                con.execute("UPDATE judgments SET status = 'undone' WHERE id = ?", (last_j[0],))
            if item is not None:
                con.execute("INSERT OR REPLACE INTO views VALUES (?, ?, ?)", (item, annotator, now))
            con.execute("COMMIT")
        finally:
            con.close()
        return {"ok": True, "item": item or ""}
