"""Durable metadata of every local resource, in one SQLite file.

Resources (jobs, state machines, executions, functions, topics, ...) are JSON documents keyed by
kind and name, so every service shares one small table instead of a schema each. History events
and published messages are append-only rows. WAL mode lets the CLI read while a run writes.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    doc TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS events (
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (stream, seq)
);
CREATE TABLE IF NOT EXISTS faults (
    service TEXT NOT NULL,
    operation TEXT NOT NULL,
    code TEXT NOT NULL,
    remaining INTEGER NOT NULL
);
"""


#: Marks an injected fault answered after the call was made (`add_fault(after=True)`).
AFTER_CALL = "after:"


class AlreadyExists(Exception):
    """A resource with this kind and name is already stored."""


class MetadataStore:
    """Thread-safe and multi-process-safe access to the workspace database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection().executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # resources ---------------------------------------------------------------
    def create(self, kind: str, name: str, doc: dict[str, Any]) -> None:
        now = time.time()
        with self._tx() as db:
            try:
                db.execute(
                    "INSERT INTO resources VALUES (?, ?, ?, ?, ?)",
                    (kind, name, json.dumps(doc), now, now),
                )
            except sqlite3.IntegrityError as err:
                raise AlreadyExists(f"{kind} {name}") from err

    def put(self, kind: str, name: str, doc: dict[str, Any]) -> None:
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO resources VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, name) "
                "DO UPDATE SET doc = excluded.doc, updated = excluded.updated",
                (kind, name, json.dumps(doc), now, now),
            )

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        row = (
            self._connection()
            .execute("SELECT doc FROM resources WHERE kind = ? AND name = ?", (kind, name))
            .fetchone()
        )
        return json.loads(row[0]) if row else None

    def update(self, kind: str, name: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into a stored document and return the result."""
        with self._tx() as db:
            row = db.execute(
                "SELECT doc FROM resources WHERE kind = ? AND name = ?", (kind, name)
            ).fetchone()
            if row is None:
                raise KeyError(f"{kind} {name}")
            doc = json.loads(row[0]) | fields
            db.execute(
                "UPDATE resources SET doc = ?, updated = ? WHERE kind = ? AND name = ?",
                (json.dumps(doc), time.time(), kind, name),
            )
        return doc

    def delete(self, kind: str, name: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM resources WHERE kind = ? AND name = ?", (kind, name))

    def list(self, kind: str) -> list[dict[str, Any]]:
        """Documents of one kind, newest first (as AWS lists most resources)."""
        rows = (
            self._connection()
            .execute(
                "SELECT doc FROM resources WHERE kind = ? ORDER BY created DESC, rowid DESC",
                (kind,),
            )
            .fetchall()
        )
        return [json.loads(row[0]) for row in rows]

    # append-only streams (execution history, published messages) -------------
    def append(self, stream: str, doc: dict[str, Any]) -> int:
        with self._tx() as db:
            (last,) = db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE stream = ?", (stream,)
            ).fetchone()
            db.execute("INSERT INTO events VALUES (?, ?, ?)", (stream, last + 1, json.dumps(doc)))
        return int(last) + 1

    def read(self, stream: str, after: int = 0) -> builtins.list[dict[str, Any]]:
        rows = (
            self._connection()
            .execute(
                "SELECT doc FROM events WHERE stream = ? AND seq > ? ORDER BY seq", (stream, after)
            )
            .fetchall()
        )
        return [json.loads(row[0]) for row in rows]

    # injected faults (tests and drills) --------------------------------------
    def add_fault(
        self, service: str, operation: str, code: str, times: int = 1, *, after: bool = False
    ) -> None:
        """The next `times` calls fail with `code`; `after`: once the call is made (the answer
        lost on its way back, HTTP 500), else before it."""
        code = AFTER_CALL + code if after else code
        with self._tx() as db:
            db.execute("INSERT INTO faults VALUES (?, ?, ?, ?)", (service, operation, code, times))

    def take_fault(self, service: str, operation: str) -> str | None:
        """Consume one injected failure for this operation, if any is left."""
        pending = (
            self._connection()
            .execute(
                "SELECT 1 FROM faults WHERE service = ? AND operation = ? AND remaining > 0",
                (service, operation),
            )
            .fetchone()
        )
        if pending is None:  # every API call asks: keep the common answer free of write locks
            return None
        with self._tx() as db:
            row = db.execute(
                "SELECT rowid, code FROM faults WHERE service = ? AND operation = ? "
                "AND remaining > 0 ORDER BY rowid LIMIT 1",
                (service, operation),
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE faults SET remaining = remaining - 1 WHERE rowid = ?", (row[0],))
            return str(row[1])
