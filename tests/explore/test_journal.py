"""The journal: append-only, keyed, durable across connections."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from approxtvm.errors import ExplorationError
from approxtvm.explore.evaluator import EvalContext, EvalTask
from approxtvm.explore.genome import Configuration
from approxtvm.explore.journal import Journal, evaluation_key
from tests.explore.fakes import fake_record


def _task(c: Configuration, fp: str = "ctx") -> EvalTask:
    return EvalTask(EvalContext("digits_cnn"), fp, c.to_json())


def test_put_get_and_duplicates_are_ignored(tmp_path: Path) -> None:
    rec = fake_record(_task(Configuration.make({"fc": "m1"})))
    with Journal(tmp_path / "j.sqlite") as j:
        assert j.put(rec) is True
        assert j.put(rec) is False
        assert j.count() == 1 and j.count("ctx") == 1 and j.count("other") == 0
        assert j.get(rec.key) == rec
        assert j.get("missing") is None
    with Journal(tmp_path / "j.sqlite") as j:  # a new connection sees the committed row
        back = j.get(rec.key)
        assert back == rec and back is not None
        assert (back.predictions == rec.predictions).all() and back.top1 == rec.top1
    # WAL is a property of the file: any other connection sees it
    with contextlib.closing(sqlite3.connect(tmp_path / "j.sqlite")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_key_depends_on_config_and_context() -> None:
    a = Configuration.make({"fc": "m1"}).to_json()
    b = Configuration.make({"fc": "m2"}).to_json()
    assert evaluation_key(a, "c1") != evaluation_key(b, "c1")
    assert evaluation_key(a, "c1") != evaluation_key(a, "c2")
    assert evaluation_key(a, "c1") == evaluation_key(a, "c1")


def test_context_fingerprint_tracks_data_and_settings() -> None:
    base = EvalContext("digits_cnn", limit=10).fingerprint()
    assert EvalContext("digits_cnn", limit=10).fingerprint() == base
    assert EvalContext("digits_cnn", limit=11).fingerprint() != base
    assert EvalContext("digits_cnn", limit=10, seed=1).fingerprint() != base


def test_not_a_journal_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ExplorationError, match="cannot open the journal"):
        Journal(bad)
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.executescript("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT); INSERT INTO meta VALUES ('schema','0');")
    db.commit()
    db.close()
    with pytest.raises(ExplorationError, match="schema"):
        Journal(other)
