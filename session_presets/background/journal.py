"""The journal of a background session: an SQLite file that outlives the process.

It records every task (kind, URL without userinfo, local path, the
``Accept``/``Accept-Language`` headers, expected digest), its validator
(ETag, Last-Modified) and its committed progress, so a new process can resume
unfinished transfers from their ``.part`` files. No other header is stored.

The file is created with mode 0600. A file that is not an SQLite database, is
damaged, or comes from a newer version of this library raises TransferError
naming it, and is never modified or deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Mapping
from typing import Any, Final

from .._errors import TransferError
from .._redact import strip_credentials

__all__ = ["RESUME_HEADERS", "SCHEMA_VERSION", "Journal", "TaskRecord"]

log = logging.getLogger(__name__)

#: Version of the journal schema, kept in ``PRAGMA user_version``.
SCHEMA_VERSION: Final = 1


#: The only request headers the journal keeps: they choose which representation a resume
#: continues. Any other header given to a task (an API key, a trace id) is sent by this
#: process only; a reattached task gets the session's ``headers=`` and ``auth=`` again.
RESUME_HEADERS: Final = frozenset({"accept", "accept-language"})

_SCHEMA: Final = """
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    path TEXT NOT NULL,
    method TEXT NOT NULL,
    headers TEXT NOT NULL,
    sha256 TEXT,
    state TEXT NOT NULL,
    bytes_done INTEGER NOT NULL DEFAULT 0,
    bytes_total INTEGER,
    etag TEXT,
    last_modified TEXT,
    error TEXT,
    resumable INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""

_KINDS: Final = frozenset({"download", "upload"})
_STATES: Final = frozenset({"pending", "running", "completed", "failed", "cancelled"})

#: Columns that ``Journal.update`` may change.
_MUTABLE: Final = frozenset(
    {"state", "bytes_done", "bytes_total", "etag", "last_modified", "error", "resumable"}
)


@dataclasses.dataclass(frozen=True)
class TaskRecord:
    """One row of the journal, as read: a new process builds its tasks from these."""

    id: int
    kind: str
    url: str
    path: str
    method: str
    headers: dict[str, str]
    sha256: str | None
    state: str
    bytes_done: int
    bytes_total: int | None
    etag: str | None
    last_modified: str | None
    error: str | None
    resumable: bool
    created_at: float


class Journal:
    """The SQLite journal at ``path``; every method is safe to call from any thread.

    Args:
        path: the journal file; created with mode 0600 if missing.

    Raises:
        TransferError: the file cannot be created or opened, is not an SQLite
            database, is damaged, or has a newer schema. The message names the
            file; the file is left untouched.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        # Opened here without following links (and created with O_EXCL) before SQLite sees the
        # path: a planted or dangling link is refused instead of creating a database at its target.
        flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        existed = True
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            existed = False
            try:
                fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
            except OSError as exc:
                raise self._refused(exc) from None
        except OSError as exc:
            raise self._refused(exc) from None
        try:
            info = os.fstat(fd)
        finally:
            os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TransferError(f"the background journal {path!r} is not a regular file; it was left untouched")
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise TransferError(
                f"the background journal {path!r} is owned by another user (uid {info.st_uid}); "
                "refusing to use it. It was left untouched."
            )
        try:
            self._db: sqlite3.Connection | None = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._unusable(exc) from exc
        try:
            self._check_and_create(existed)
        except BaseException:
            self._db.close()
            self._db = None
            raise
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)

    def _refused(self, exc: OSError) -> TransferError:
        if exc.errno in (errno.ELOOP, errno.EEXIST):
            return TransferError(
                f"refusing the background journal {self.path!r}: it is a symbolic link, which this library "
                "never follows (someone with write access to the state directory planted it). "
                "Its target was left untouched."
            )
        return TransferError(f"cannot open the background journal {self.path!r}: {exc}")

    def _unusable(self, exc: BaseException) -> TransferError:
        return TransferError(
            f"the background journal {self.path!r} cannot be used: {exc}. It is not a valid "
            "session_presets journal (damaged, or not an SQLite file). It was left untouched: "
            "move it away to start afresh, or keep it for inspection."
        )

    def _check_and_create(self, existed: bool) -> None:
        db = self._db
        assert db is not None
        try:
            db.execute("PRAGMA synchronous=FULL")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise TransferError(
                    f"the background journal {self.path!r} has schema version {version}, newer than "
                    f"this library's {SCHEMA_VERSION}: it was written by a newer session_presets. "
                    "It was left untouched: upgrade session_presets, or use another identifier."
                )
            check = db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise self._unusable(sqlite3.DatabaseError(f"integrity check failed: {check}"))
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if version == 0:
                if tables - {"sqlite_sequence"}:
                    raise self._unusable(sqlite3.DatabaseError("it holds tables but no schema version"))
                db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
            elif "tasks" not in tables:
                raise self._unusable(sqlite3.DatabaseError("the tasks table is missing"))
            # Only once the file is known to be ours: WAL makes a durable commit one fsync
            # of an append, not three. Commits are durable only when asked (see update()).
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise self._unusable(exc) from exc
        log.debug("opened journal %r (existed=%r)", self.path, existed)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise TransferError(f"the background journal {self.path!r} is closed")
        return self._db

    def add(
        self,
        *,
        kind: str,
        url: str,
        path: str,
        method: str,
        headers: Mapping[str, str],
        sha256: str | None,
        state: str,
    ) -> tuple[int, float]:
        """Record a new task: ``url`` without userinfo, and only the RESUME_HEADERS of ``headers``.

        Returns:
            The task's id and its creation time (seconds since the epoch).

        Raises:
            TransferError: the journal cannot be written.
        """
        url, kept = strip_credentials(url, headers)
        kept = {name: value for name, value in kept.items() if name.lower() in RESUME_HEADERS}
        now = time.time()
        with self._lock:
            try:
                db = self._conn()
                # A new task must survive a power cut: the caller was told it exists.
                db.execute("PRAGMA synchronous=FULL")
                try:
                    cursor = db.execute(
                        "INSERT INTO tasks (kind, url, path, method, headers, sha256, state, created_at, updated_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (kind, url, path, method, json.dumps(kept), sha256, state, now, now),
                    )
                finally:
                    db.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise TransferError(f"cannot write the background journal {self.path!r}: {exc}") from exc
        assert cursor.lastrowid is not None
        return cursor.lastrowid, now

    def update(self, task_id: int, *, durable: bool = True, **fields: Any) -> None:
        """Change columns of one task in a single transaction.

        With ``durable=False`` the change survives the process being killed but
        may be lost to a power cut (with every later non-durable change: the
        log is replayed in order). That is for changes whose loss is harmless:
        a state shown, an offset smaller than one already durable.

        Raises:
            TransferError: the journal cannot be written (for example, the disk is full).
        """
        unknown = set(fields) - _MUTABLE
        if unknown:
            raise ValueError(f"not journal columns: {sorted(unknown)}")
        columns = ", ".join(f"{name} = ?" for name in fields)
        values = [*fields.values(), time.time(), task_id]
        with self._lock:
            try:
                db = self._conn()
                if durable:
                    db.execute("PRAGMA synchronous=FULL")
                try:
                    db.execute(f"UPDATE tasks SET {columns}, updated_at = ? WHERE id = ?", values)
                finally:
                    if durable:
                        db.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise TransferError(f"cannot write the background journal {self.path!r}: {exc}") from exc

    def delete(self, task_id: int) -> None:
        """Remove one task.

        Raises:
            TransferError: the journal cannot be written.
        """
        with self._lock:
            try:
                self._conn().execute("DELETE FROM tasks WHERE id = ?", (task_id,))
            except sqlite3.Error as exc:
                raise TransferError(f"cannot write the background journal {self.path!r}: {exc}") from exc

    def load(self) -> list[TaskRecord]:
        """Return every task, oldest first.

        Raises:
            TransferError: the journal cannot be read, or a row is malformed.
        """
        with self._lock:
            try:
                rows = self._conn().execute(
                    "SELECT id, kind, url, path, method, headers, sha256, state, bytes_done, bytes_total, "
                    "etag, last_modified, error, resumable, created_at FROM tasks ORDER BY id"
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._unusable(exc) from exc
        records = []
        for row in rows:
            try:
                headers = json.loads(row[5])
                if not isinstance(headers, dict):
                    raise ValueError("headers is not a JSON object")
                if row[1] not in _KINDS or row[7] not in _STATES:
                    raise ValueError(f"unknown kind {row[1]!r} or state {row[7]!r}")
                records.append(
                    TaskRecord(
                        id=int(row[0]),
                        kind=str(row[1]),
                        url=str(row[2]),
                        path=str(row[3]),
                        method=str(row[4]),
                        headers={str(k): str(v) for k, v in headers.items()},
                        sha256=row[6],
                        state=str(row[7]),
                        bytes_done=int(row[8]),
                        bytes_total=None if row[9] is None else int(row[9]),
                        etag=row[10],
                        last_modified=row[11],
                        error=row[12],
                        resumable=bool(row[13]),
                        created_at=float(row[14]),
                    )
                )
            except (TypeError, ValueError) as exc:
                raise self._unusable(ValueError(f"task row {row[0]!r} is malformed: {exc}")) from exc
        return records

    def close(self) -> None:
        """Close the database; safe to call twice."""
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            db.close()

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's connection without using it."""
        self._db = None
        self._lock = threading.Lock()
