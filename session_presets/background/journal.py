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
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Final

from .._errors import TransferError
from .._redact import strip_credentials

__all__ = ["RESUME_HEADERS", "SCHEMA_VERSION", "Journal", "TaskRecord"]

log = logging.getLogger(__name__)

#: Version of the journal schema, kept in ``PRAGMA user_version``.
SCHEMA_VERSION: Final = 2

#: Columns each schema version added, as ``ALTER TABLE`` clauses: a journal of an older version
#: gets them (with their defaults) when it is opened.
_ADDED_IN: Final[dict[int, tuple[str, ...]]] = {
    2: ("protocol", "upload_url", "source_identity", "upload_sent"),
}


#: The only request headers the journal keeps: they choose which representation a resume
#: continues. Any other header given to a task (an API key, a trace id) is sent by this
#: process only; a reattached task gets the session's ``headers=`` and ``auth=`` again.
RESUME_HEADERS: Final = frozenset({"accept", "accept-language"})

_KINDS: Final = frozenset({"download", "upload"})
_STATES: Final = frozenset({"pending", "running", "completed", "failed", "cancelled"})
_PROTOCOLS: Final = frozenset({"auto", "none", "tus", "ietf"})


def _column(
    sql: str, load: Callable[[Any], Any], *, mutable: bool = False, dump: Callable[[Any], Any] | None = None
) -> dict[str, Any]:
    """The metadata of a TaskRecord field: its SQL declaration, how a stored value is read back
    (raising ValueError or TypeError on a malformed one), whether ``Journal.update`` may change
    it, and how it is written when it is not stored as it is held."""
    return {"sql": sql, "load": load, "mutable": mutable, "dump": dump}


def _optional(load: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else load(value)


def _one_of(allowed: frozenset[str], what: str) -> Callable[[Any], str]:
    def load(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"unknown {what} {value!r}")
        return str(value)

    return load


def _headers(value: Any) -> dict[str, str]:
    headers = json.loads(value)
    if not isinstance(headers, dict):
        raise ValueError("headers is not a JSON object")
    return {str(name): str(text) for name, text in headers.items()}


@dataclasses.dataclass(frozen=True)
class TaskRecord:
    """One row of the journal, as read: a new process builds its tasks from these.

    This class is the one list of a task's stored fields: the table, the
    columns ``Journal.update`` may change, and the reading of a row all come
    from its fields. A field added here needs a default in its SQL (or to be
    nullable) and a schema version step for journals written before it.
    """

    id: int = dataclasses.field(metadata=_column("INTEGER PRIMARY KEY AUTOINCREMENT", int))
    kind: str = dataclasses.field(metadata=_column("TEXT NOT NULL", _one_of(_KINDS, "kind")))
    url: str = dataclasses.field(metadata=_column("TEXT NOT NULL", str))
    path: str = dataclasses.field(metadata=_column("TEXT NOT NULL", str))
    method: str = dataclasses.field(metadata=_column("TEXT NOT NULL", str))
    headers: dict[str, str] = dataclasses.field(metadata=_column("TEXT NOT NULL", _headers, dump=json.dumps))
    sha256: str | None = dataclasses.field(metadata=_column("TEXT", _optional(str)))
    state: str = dataclasses.field(metadata=_column("TEXT NOT NULL", _one_of(_STATES, "state"), mutable=True))
    bytes_done: int = dataclasses.field(metadata=_column("INTEGER NOT NULL DEFAULT 0", int, mutable=True))
    bytes_total: int | None = dataclasses.field(metadata=_column("INTEGER", _optional(int), mutable=True))
    etag: str | None = dataclasses.field(metadata=_column("TEXT", _optional(str), mutable=True))
    last_modified: str | None = dataclasses.field(metadata=_column("TEXT", _optional(str), mutable=True))
    error: str | None = dataclasses.field(metadata=_column("TEXT", _optional(str), mutable=True))
    resumable: bool = dataclasses.field(metadata=_column("INTEGER NOT NULL DEFAULT 0", bool, mutable=True))
    created_at: float = dataclasses.field(metadata=_column("REAL NOT NULL", float))
    #: An upload's resume protocol: "none", "tus", "ietf", or "auto" until discovery chose one.
    protocol: str = dataclasses.field(
        default="none", metadata=_column("TEXT NOT NULL DEFAULT 'none'", _one_of(_PROTOCOLS, "protocol"), mutable=True)
    )
    #: The upload resource a resumable upload appends to, once the server created it.
    upload_url: str | None = dataclasses.field(default=None, metadata=_column("TEXT", _optional(str), mutable=True))
    #: ``"st_dev:st_ino:st_size:st_mtime_ns"`` of an upload's source when it was first read.
    source_identity: str | None = dataclasses.field(
        default=None, metadata=_column("TEXT", _optional(str), mutable=True)
    )
    #: The end of the furthest append an upload began: a server offset beyond it is refused.
    upload_sent: int = dataclasses.field(default=0, metadata=_column("INTEGER NOT NULL DEFAULT 0", int, mutable=True))


_FIELDS: Final = dataclasses.fields(TaskRecord)

#: The journal's one table: a column per TaskRecord field, and when the row last changed.
_SCHEMA: Final = (
    "CREATE TABLE tasks (\n"
    + "".join(f"    {field.name} {field.metadata['sql']},\n" for field in _FIELDS)
    + "    updated_at REAL NOT NULL\n);\n"
)

#: Columns that ``Journal.update`` may change.
_MUTABLE: Final = frozenset(field.name for field in _FIELDS if field.metadata["mutable"])

#: Columns ``Journal.add`` fills itself.
_ASSIGNED: Final = frozenset({"id", "created_at"})

_SELECT: Final = f"SELECT {', '.join(field.name for field in _FIELDS)} FROM tasks"


def _select_present(present: set[str]) -> str:
    """``_SELECT`` for a journal of an older schema: a column it lacks reads as the default it will get."""
    columns = []
    for field in _FIELDS:
        if field.name in present:
            columns.append(field.name)
        else:
            default = field.metadata["sql"].partition(" DEFAULT ")[2] or "NULL"
            columns.append(f"{default} AS {field.name}")
    return f"SELECT {', '.join(columns)} FROM tasks"


#: How the columns not stored as they are held in memory are written.
_DUMPS: Final = {field.name: field.metadata["dump"] for field in _FIELDS if field.metadata["dump"] is not None}


def _stored(name: str, value: Any) -> Any:
    dump = _DUMPS.get(name)
    return value if dump is None else dump(value)


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
        #: The schema version the file had when opened (older ones are upgraded).
        self._version: int = SCHEMA_VERSION
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
        # Validated through a read-only connection first: a journal refused here is left
        # byte for byte as it was (a read-write connection would checkpoint a pending -wal
        # into the file on close, and switch a rollback journal to WAL).
        fresh = self._validate_read_only()
        try:
            self._db: sqlite3.Connection | None = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._unusable(exc, untouched=False) from exc
        try:
            self._open_read_write(existed, fresh)
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

    def _unusable(self, exc: BaseException, *, untouched: bool = True) -> TransferError:
        """The error for a journal that cannot be used; it says "left untouched" only when that is true."""
        if untouched:
            return TransferError(
                f"the background journal {self.path!r} cannot be used: {exc}. It is not a valid "
                "session_presets journal (damaged, or not an SQLite file). It was left untouched: "
                "move it away to start afresh, or keep it for inspection."
            )
        return TransferError(
            f"the background journal {self.path!r} cannot be used: {exc}. Move it away to start afresh, "
            "or keep it for inspection."
        )

    def _validate_read_only(self) -> bool:
        """Check the journal through a read-only connection; return True if it is empty (new).

        Every check that can refuse a journal runs here, rows included, so that a
        refused journal was never opened for writing.

        Raises:
            TransferError: a newer schema, a failed integrity check, tables that are
                not a journal's, or a malformed row.
        """
        uri = f"file:{urllib.parse.quote(os.path.abspath(self.path))}?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._unusable(exc) from exc
        try:
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
                return True
            if "tasks" not in tables:
                raise self._unusable(sqlite3.DatabaseError("the tasks table is missing"))
            self._version = version
            present = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
            for row in db.execute(_select_present(present)):
                self._record(row)
            return False
        except sqlite3.Error as exc:
            raise self._unusable(exc) from exc
        finally:
            db.close()

    def _open_read_write(self, existed: bool, fresh: bool) -> None:
        """Create the schema of a new journal and switch to WAL: the journal is known good by now."""
        db = self._db
        assert db is not None
        try:
            db.execute("PRAGMA synchronous=FULL")
            if fresh:
                # BEGIN IMMEDIATE, then the version read again: nobody wrote it in between.
                db.execute("BEGIN IMMEDIATE")
                try:
                    if int(db.execute("PRAGMA user_version").fetchone()[0]) == 0:
                        db.execute(_SCHEMA)
                        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            elif self._version < SCHEMA_VERSION:
                self._upgrade(self._version)
            # WAL makes a durable commit one fsync of an append, not three. Commits are
            # durable only when asked (see update()).
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise self._unusable(exc, untouched=False) from exc
        log.debug("opened journal %r (existed=%r)", self.path, existed)

    def _upgrade(self, version: int) -> None:
        """Add the columns of every schema version after ``version``, in one transaction."""
        db = self._db
        assert db is not None
        sql = {field.name: field.metadata["sql"] for field in _FIELDS}
        steps = [
            f"ALTER TABLE tasks ADD COLUMN {name} {sql[name]};"
            for step in range(version + 1, SCHEMA_VERSION + 1)
            for name in _ADDED_IN.get(step, ())
        ]
        db.executescript(f"BEGIN IMMEDIATE; {' '.join(steps)} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        log.debug("journal %r upgraded from schema %d to %d", self.path, version, SCHEMA_VERSION)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise TransferError(f"the background journal {self.path!r} is closed")
        return self._db

    def add(self, *, url: str, headers: Mapping[str, str], **columns: Any) -> TaskRecord:
        """Record a new task: ``url`` without userinfo, only the RESUME_HEADERS of ``headers``,
        and the other TaskRecord fields given in ``columns`` (the rest take their defaults).

        Returns:
            The task as stored, with its id and creation time.

        Raises:
            ValueError: a name in ``columns`` is not a TaskRecord field, or is assigned here.
            TransferError: the journal cannot be written.
        """
        unknown = set(columns) - {field.name for field in _FIELDS} | (set(columns) & _ASSIGNED)
        if unknown:
            raise ValueError(f"not journal columns for a new task: {sorted(unknown)}")
        url, kept = strip_credentials(url, headers)
        kept = {name: value for name, value in kept.items() if name.lower() in RESUME_HEADERS}
        now = time.time()
        row = {"url": url, "headers": kept, **columns, "created_at": now, "updated_at": now}
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        values = [_stored(name, value) for name, value in row.items()]
        with self._lock:
            try:
                db = self._conn()
                # A new task must survive a power cut: the caller was told it exists.
                db.execute("PRAGMA synchronous=FULL")
                try:
                    cursor = db.execute(f"INSERT INTO tasks ({names}) VALUES ({marks})", values)
                finally:
                    db.execute("PRAGMA synchronous=NORMAL")
                stored = db.execute(f"{_SELECT} WHERE id = ?", (cursor.lastrowid,)).fetchone()
            except sqlite3.Error as exc:
                raise TransferError(f"cannot write the background journal {self.path!r}: {exc}") from exc
        return self._record(stored, untouched=False)

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
        values = [*(_stored(name, value) for name, value in fields.items()), time.time(), task_id]
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
                rows = self._conn().execute(f"{_SELECT} ORDER BY id").fetchall()
            except sqlite3.Error as exc:
                raise self._unusable(exc, untouched=False) from exc
        return [self._record(row, untouched=False) for row in rows]

    def _record(self, row: tuple[Any, ...], *, untouched: bool = True) -> TaskRecord:
        try:
            values = {field.name: field.metadata["load"](value) for field, value in zip(_FIELDS, row, strict=True)}
            return TaskRecord(**values)
        except (TypeError, ValueError) as exc:
            raise self._unusable(ValueError(f"task row {row[0]!r} is malformed: {exc}"), untouched=untouched) from exc

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
