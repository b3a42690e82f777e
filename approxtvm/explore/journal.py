"""Append-only SQLite journal of evaluations, keyed by configuration hash.

Every finished evaluation is committed at once (WAL mode), so a run killed at any point — ``kill
-9`` included — loses at most the evaluations still in flight; started again with the same
arguments it finds the others here and does not redo them. Rows are never updated or deleted:
``put`` of a key already present is a no-op, which is also what keeps a re-executed task (a Dask
worker lost after finishing but before reporting) from being counted twice.

The key of an evaluation is the SHA-256 of the canonical configuration JSON, the fingerprint of the
evaluation context (model, calibration, dataset, batch size, seed) and :data:`EVALUATOR_VERSION`
(see :func:`evaluation_key`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from approxtvm.errors import ExplorationError

#: Bump when the meaning of a stored evaluation changes (invalidates old journal entries).
EVALUATOR_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations (
    key TEXT PRIMARY KEY,
    context TEXT NOT NULL,
    config TEXT NOT NULL,
    samples INTEGER NOT NULL,
    correct INTEGER,
    energy_per_inference_pj REAL NOT NULL,
    predictions BLOB NOT NULL,
    detail TEXT NOT NULL,
    eval_s REAL NOT NULL,
    worker TEXT NOT NULL,
    created_unix_s REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS evaluations_context ON evaluations (context);
"""
_SCHEMA_VERSION = "1"


def evaluation_key(config_json: str, context: str) -> str:
    """SHA-256 (hex) identifying one configuration evaluated in one context."""
    payload = json.dumps(
        {"config": json.loads(config_json), "context": context, "evaluator": EVALUATOR_VERSION},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class EvalRecord:
    """The stored result of one evaluation.

    Attributes
    ----------
    key
        :func:`evaluation_key` of (config, context).
    context
        Fingerprint of the evaluation context (model, data, batch size, seed).
    config_json
        Canonical configuration JSON (:meth:`Configuration.to_json`).
    samples
        Samples run.
    correct
        Samples whose top-1 matched the label (``None`` without labels).
    energy_per_inference_pj
        Accelerator energy per sample (pJ).
    predictions_i16
        Top-1 class per sample, int16 little-endian bytes.
    detail_json
        JSON with ``by_component_pj``, ``by_layer_pj`` (per inference), ``layer_ids`` and
        ``macs_per_inference``.
    eval_s
        Wall time of compile + run on the worker (s).
    worker
        Host and process that evaluated it.
    """

    key: str
    context: str
    config_json: str
    samples: int
    correct: int | None
    energy_per_inference_pj: float
    predictions_i16: bytes
    detail_json: str
    eval_s: float
    worker: str

    @property
    def predictions(self) -> np.ndarray:
        """Top-1 class per sample."""
        return np.frombuffer(self.predictions_i16, dtype="<i2")

    @property
    def top1(self) -> float | None:
        """Top-1 accuracy (``None`` without labels)."""
        return None if self.correct is None else self.correct / self.samples

    @property
    def detail(self) -> dict[str, Any]:
        """Decoded :attr:`detail_json`."""
        return json.loads(self.detail_json)


class Journal:
    """SQLite journal of evaluations (WAL, append-only); one connection, one thread.

    Parameters
    ----------
    path
        Database file; created with its parent folder if missing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ExplorationError(
                f"cannot open the journal {self.path}",
                expected="an approxtvm SQLite journal",
                found=f"{type(exc).__name__}: {exc}",
                fix="pass a new --journal path, or delete the damaged file",
            ) from None
        if row is None:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
        elif row[0] != _SCHEMA_VERSION:
            raise ExplorationError(
                f"journal {self.path} has schema {row[0]}",
                expected=f"schema {_SCHEMA_VERSION}",
                found=row[0],
                fix="use a new journal file",
            )

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (everything is already committed)."""
        self._db.close()

    def put(self, record: EvalRecord) -> bool:
        """Append ``record``; returns ``False`` (and changes nothing) if its key is already stored."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO evaluations VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                record.key,
                record.context,
                record.config_json,
                record.samples,
                record.correct,
                record.energy_per_inference_pj,
                record.predictions_i16,
                record.detail_json,
                record.eval_s,
                record.worker,
                time.time(),
            ),
        )
        return cur.rowcount == 1

    def get(self, key: str) -> EvalRecord | None:
        """The record of ``key``, if journaled."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: list[str]) -> dict[str, EvalRecord]:
        """Records of those ``keys`` that are journaled."""
        out: dict[str, EvalRecord] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM evaluations WHERE key IN ({','.join('?' * len(chunk))})", chunk
            )
            out.update((r[0], _record(r)) for r in rows)
        return out

    def records(self, context: str | None = None) -> list[EvalRecord]:
        """All records (of one context), in insertion order."""
        if context is None:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM evaluations ORDER BY rowid")
        else:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM evaluations WHERE context=? ORDER BY rowid", (context,))
        return [_record(r) for r in rows]

    def count(self, context: str | None = None) -> int:
        """Number of stored evaluations (of one context)."""
        if context is None:
            return int(self._db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0])
        return int(self._db.execute("SELECT COUNT(*) FROM evaluations WHERE context=?", (context,)).fetchone()[0])

    def set_meta(self, name: str, value: str) -> None:
        """Record a run-level fact once (first writer wins; append-only like the rest)."""
        self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (name, value))

    def meta(self, name: str) -> str | None:
        """A run-level fact, if recorded."""
        row = self._db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return None if row is None else str(row[0])


_COLUMNS = "key, context, config, samples, correct, energy_per_inference_pj, predictions, detail, eval_s, worker"


def _record(r: tuple[Any, ...]) -> EvalRecord:
    return EvalRecord(
        key=r[0],
        context=r[1],
        config_json=r[2],
        samples=int(r[3]),
        correct=None if r[4] is None else int(r[4]),
        energy_per_inference_pj=float(r[5]),
        predictions_i16=bytes(r[6]),
        detail_json=r[7],
        eval_s=float(r[8]),
        worker=r[9],
    )
