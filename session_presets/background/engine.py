"""BackgroundSession: worker threads, the task queue, the lifecycle and one object per identifier."""

from __future__ import annotations

import collections
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, overload

from .. import _process
from .._config import PresetConfig, check_header
from .._errors import ConfigError, TransferError
from .._lifecycle import SessionLifecycle, SessionState
from .._presets import resolve
from .._redact import safe_url
from .._sessions import PresetSession
from . import _upload
from ._taskstate import TaskState
from .journal import Journal, TaskRecord
from .lockfile import DestinationLock, IdentifierLock, default_state_dir, prepare_state_dir, validate_identifier
from .task import DOWNLOAD, UPLOAD, ProgressCallback, TransferState, TransferTask
from .transfer import Runner

if TYPE_CHECKING:
    from ._client import DetachedSession

__all__ = ["BackgroundSession", "background_session"]

log = logging.getLogger(__name__)

#: How long invalidate_and_cancel (and process exit) waits for workers to stop.
STOP_GRACE: Final = 2.0

#: Headers a download manages itself; a caller may not set them.
_MANAGED_HEADERS: Final = frozenset({"range", "if-range", "accept-encoding"})

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")

_registry: dict[str, BackgroundSession] = {}
_registry_lock = _process.fork_safe_lock(reentrant=True)


def _check_headers(headers: Mapping[str, str] | None, *, download: bool) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ConfigError(f"headers={headers!r} is invalid: expected a mapping of header names to strings")
    clean: dict[str, str] = {}
    for name, value in headers.items():
        check_header(name, value)
        if download and name.lower() in _MANAGED_HEADERS:
            raise ConfigError(f"headers: {name!r} is refused: background downloads manage it themselves")
        clean[name] = value
    return clean


def _check_url(url: object) -> str:
    if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url, re.IGNORECASE):
        shown = safe_url(url) if isinstance(url, str) else url
        raise ConfigError(f"url={shown!r} is invalid: expected an absolute http:// or https:// URL")
    return url



#: What the download puts beside ``dest``: the longest of the names it derives from dest's.
_LONGEST_SUFFIX: Final = ".part.lock"


def _check_name_length(path: str) -> None:
    """Refuse a ``dest`` whose ``.part.lock`` would be a file name longer than the directory allows.

    The name itself may be valid; the files the download keeps beside it would
    not be, and the download would fail only after it started.
    """
    directory, name = os.path.split(path)
    try:
        limit = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # pragma: no cover - no pathconf, or no such variable
        limit = 255
    longest = len(os.fsencode(name + _LONGEST_SUFFIX))
    if limit > 0 and longest > limit:
        raise ConfigError(
            f"dest={path!r} is invalid: its file name is {longest - len(_LONGEST_SUFFIX)} bytes, and the "
            f"download keeps {name[:16]}...{_LONGEST_SUFFIX} beside it, which must fit the directory's "
            f"limit of {limit} bytes; use a name of at most {limit - len(_LONGEST_SUFFIX)} bytes"
        )

class BackgroundSession(SessionLifecycle):
    """Resumable file transfers on worker threads, with a journal that survives the process.

    Get one with :func:`background_session`: there is one live object per
    identifier per process, and one process per identifier at a time.

    Attributes:
        identifier: the name of the session; it names the journal and lock files.
        config: the effective ``background`` preset.
        journal_path: ``<state_dir>/<identifier>.sqlite3``.

    Raises:
        IdentifierInUseError: another live process holds the identifier.
        TransferError: the journal is damaged, not SQLite, or from a newer version.
    """

    _WORK = "transfers"

    def __init__(self, identifier: str, config: PresetConfig, *, auth: Any = None) -> None:
        self.identifier = validate_identifier(identifier)
        self.config = config
        self._auth = auth
        state_dir = prepare_state_dir(config.state_dir or default_state_dir())
        self.state_dir = state_dir
        self.journal_path = os.path.join(state_dir, f"{identifier}.sqlite3")
        self._lockfile = IdentifierLock(os.path.join(state_dir, f"{identifier}.lock"), identifier)
        try:
            self._journal = Journal(self.journal_path)
        except BaseException:
            self._lockfile.release()
            raise
        self._init_lifecycle()
        # The runner's state of every task, and the read-only handles users hold, by task id.
        self._tasks: dict[int, TaskState] = {}
        self._handles: dict[int, TransferTask] = {}
        self._queue: collections.deque[TaskState] = collections.deque()
        self._workers: list[threading.Thread] = []
        self._idle_workers = 0
        self._stopping = False
        # The engine retries and resumes by itself: the HTTP layer must not retry.
        self._http = PresetSession(config.replace(retries=0, retry_statuses=frozenset()), _registry_owned=True)
        self._runner = Runner(self._http, config, auth, self._journal)
        try:
            self._reattach()
        except BaseException:
            self._close_resources()
            raise
        log.debug("background session %r opened (journal %r)", identifier, self.journal_path)

    # -- state -----------------------------------------------------------------

    def __repr__(self) -> str:
        return f"<BackgroundSession {self.identifier!r} state={self._state.value} tasks={len(self._tasks)}>"

    # -- journal ---------------------------------------------------------------

    def _reattach(self) -> None:
        records = self._journal.load()
        with self._cond:
            for record in records:
                self._task_from_record(record)

    def _task_from_record(self, record: TaskRecord) -> None:
        recorded = TransferState(record.state)
        resume = recorded in (TransferState.PENDING, TransferState.RUNNING) or (
            recorded is TransferState.FAILED and record.resumable
        )
        lock: DestinationLock | None = None
        refused: TransferError | None = None
        if resume and record.kind == DOWNLOAD:
            try:
                lock = self._lock_destination(record.path, record.id)
            except TransferError as exc:
                refused = exc
        # It starts at the committed offset: the .part is cut back to it before the download resumes.
        task = self._track(
            TaskState(record, url=record.url, headers=record.headers, resume=resume, dest_lock=lock), None
        )
        if refused is not None:
            self._runner.end(task, TransferState.FAILED, refused)
        elif resume:
            log.debug(
                "resuming task %d (%s of %s) from byte %d",
                record.id, record.kind, safe_url(record.url), record.bytes_done,
            )
            self._runner.save(task, state=TransferState.PENDING.value, error=None, resumable=0)
            self._enqueue(task)

    def _track(self, task: TaskState, progress: ProgressCallback | None) -> TaskState:
        self._tasks[task.record.id] = task
        self._handles[task.record.id] = TransferTask(task, self._cancel, progress)
        return task

    def _owner(self, task_id: int | None) -> str:
        task = "a new task" if task_id is None else f"task {task_id}"
        return f"pid {os.getpid()}, background session {self.identifier!r}, {task}"

    def _lock_destination(self, path: str, task_id: int | None) -> DestinationLock:
        return DestinationLock(path, self._owner(task_id))

    # -- transfers -------------------------------------------------------------

    def download(
        self,
        url: str,
        dest: str | os.PathLike[str],
        *,
        headers: Mapping[str, str] | None = None,
        sha256: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> TransferTask:
        """Start downloading ``url`` into ``dest`` on a worker thread.

        The body goes to ``dest + ".part"``, which becomes ``dest`` only when it
        is complete: its length matches, and its sha256 if one is given.

        Args:
            url: an http:// or https:// URL.
            dest: the file to create; its directory must exist.
            headers: extra request headers. Authorization, Proxy-Authorization
                and Cookie are sent but never written to the journal.
            sha256: the expected hex digest of the file.
            progress: called with the task from a worker thread, at most about
                10 times a second and once more when the task ends.

        Returns:
            The task, already queued.

        Raises:
            SessionInvalidatedError: the session is invalidating or invalidated.
            ConfigError: an argument is invalid, or another unfinished task
                of this session writes to ``dest``.
            DestinationInUseError: a task of another session or process
                writes to ``dest`` (a TransferError naming it).
            TransferError: the journal cannot be written, or ``dest.lock`` is
                a symbolic link.
        """
        url = _check_url(url)
        path = os.path.abspath(os.fspath(dest))
        clean = _check_headers(headers, download=True)
        if sha256 is not None and (not isinstance(sha256, str) or not _SHA256.match(sha256)):
            raise ConfigError(f"sha256={sha256!r} is invalid: expected 64 hexadecimal digits")
        if not os.path.isdir(os.path.dirname(path)):
            raise ConfigError(f"dest={path!r} is invalid: its directory does not exist")
        if os.path.isdir(path):
            raise ConfigError(f"dest={path!r} is invalid: it is a directory; give the file's path")
        _check_name_length(path)
        with self._cond:
            self._require_active()
            for other in self._tasks.values():
                if other.record.kind == DOWNLOAD and other.record.path == path and not other.finished.is_set():
                    raise ConfigError(f"dest={path!r} is already the target of unfinished task {other.record.id}")
            lock = self._lock_destination(path, None)
            try:
                # A .part no task owns cannot be trusted to resume from (unlink never follows a link).
                os.unlink(path + ".part")
            except FileNotFoundError:
                pass
            except OSError as exc:
                lock.release()
                raise TransferError(f"cannot remove the stale {path + '.part'!r}: {exc}") from exc
            try:
                task = self._add(
                    DOWNLOAD, url, path, "GET", clean, None if sha256 is None else sha256.lower(), progress, lock
                )
            except BaseException:
                lock.release()
                raise
            lock.set_owner(self._owner(task.record.id))  # the task has its number now
            return self._handles[task.record.id]

    def upload(
        self,
        url: str,
        src: str | os.PathLike[str],
        *,
        protocol: str = "auto",
        method: str = "PUT",
        headers: Mapping[str, str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> TransferTask:
        """Start sending the file ``src`` to ``url`` on a worker thread, resuming where the server left off.

        With ``protocol="tus"`` (tus 1.0: creation, HEAD for the offset, PATCH)
        or ``"ietf"`` (the IETF HTTP resumable-upload draft -09, interop
        version 8), a dropped connection or a killed process resumes from the
        offset the server reports; the task's ``upload_url`` is the upload
        resource. ``"auto"`` asks the server (OPTIONS) and falls back to
        ``"none"``, a plain upload retried from the start. The source file must
        not change until the upload completes: a change fails the task with an
        error naming the file, and abandons the upload resource. See
        docs/uploads.md.

        Args:
            url: an http:// or https:// URL: the resource receiving the file
                (tus and the draft create the upload resource there with POST).
            src: the file to send.
            protocol: ``"auto"``, ``"tus"``, ``"ietf"`` or ``"none"``.
            method: the HTTP method of a ``protocol="none"`` upload, ``PUT``
                unless told otherwise. With tus or the draft the protocol
                decides the methods (POST, HEAD, PATCH, DELETE) and ``method``
                is not used.
            headers: extra request headers, sent on every request (Content-*
                ones on the creation request only); only Accept and
                Accept-Language reach the journal, so credentials never do.
            progress: called as for :meth:`download`.

        Returns:
            The task, already queued.

        Raises:
            SessionInvalidatedError: the session is invalidating or invalidated.
            ConfigError: an argument is invalid or ``src`` is not a readable file.
            TransferError: the journal cannot be written.
        """
        url = _check_url(url)
        if protocol not in _upload.PROTOCOLS:
            accepted = ", ".join(repr(name) for name in sorted(_upload.PROTOCOLS))
            raise ConfigError(f"protocol={protocol!r} is invalid: expected one of {accepted}")
        path = os.path.abspath(os.fspath(src))
        clean = _check_headers(headers, download=False)
        if not isinstance(method, str) or not re.match(r"^[A-Z]+$", method.upper()):
            raise ConfigError(f"method={method!r} is invalid: expected an HTTP method such as 'PUT' or 'POST'")
        if not os.path.isfile(path):
            raise ConfigError(f"src={path!r} is invalid: it is not an existing file")
        with self._cond:
            self._require_active()
            task = self._add(UPLOAD, url, path, method.upper(), clean, None, progress, protocol=protocol)
            return self._handles[task.record.id]

    def _add(
        self,
        kind: str,
        url: str,
        path: str,
        method: str,
        headers: dict[str, str],
        sha256: str | None,
        progress: ProgressCallback | None,
        lock: DestinationLock | None = None,
        *,
        protocol: str = "none",
    ) -> TaskState:
        record = self._journal.add(
            kind=kind,
            url=url,
            path=path,
            method=method,
            headers=headers,
            sha256=sha256,
            state=TransferState.PENDING.value,
            protocol=protocol,
        )
        task = self._track(TaskState(record, url=url, headers=headers, resume=False, dest_lock=lock), progress)
        self._enqueue(task)
        log.debug("queued task %d: %s %s", record.id, kind, safe_url(url))
        return task

    def _enqueue(self, task: TaskState) -> None:
        self._queue.append(task)
        # Workers start as tasks need them, up to the limit: a single download pays for one thread.
        if self._idle_workers < len(self._queue) and len(self._workers) < self.config.max_concurrent_transfers:
            self._workers.append(
                _process.start_thread(self._work, name=f"session-presets-{self.identifier}-{len(self._workers)}")
            )
        self._cond.notify()

    def tasks(self) -> list[TransferTask]:
        """Return every task of the session, oldest first, finished ones included until forgotten."""
        with self._cond:
            return list(self._handles.values())

    def forget(self, task: TransferTask) -> None:
        """Drop ``task`` from the session and its journal, cancelling it first if unfinished.

        Raises:
            ConfigError: the task does not belong to this session.
            TransferError: the journal cannot be written.
        """
        if self._handles.get(task.id) is not task:
            raise ConfigError(f"{task!r} does not belong to background session {self.identifier!r}")
        if not task.done:
            task.cancel()
            task.wait(STOP_GRACE)
        with self._cond:
            self._tasks.pop(task.id, None)
            self._handles.pop(task.id, None)
            if self._state is not SessionState.INVALIDATED:
                self._journal.delete(task.id)

    # -- workers ---------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._idle_workers += 1
                    try:
                        self._cond.wait()
                    finally:
                        self._idle_workers -= 1
                if self._stopping:
                    return
                task = self._queue.popleft()
                self._runner.start(task)
            self._runner.execute(task)
            with self._cond:
                self._cond.notify_all()

    def _cancel(self, task: TaskState) -> None:
        with self._cond:
            if not self._runner.request_stop(task, cancel=True):
                return
            queued = task.state is TransferState.PENDING and task in self._queue
            if queued:
                self._queue.remove(task)
        if queued:
            self._runner.end_cancelled(task)
            with self._cond:
                self._cond.notify_all()
        else:
            self._runner.interrupt(task)

    # -- lifecycle -------------------------------------------------------------

    # The steps are SessionLifecycle's: finish_tasks_and_invalidate() waits for
    # every task to end, invalidate_and_cancel() cancels the unfinished ones and
    # deletes their .part files; either releases the identifier, and afterwards
    # background_session(identifier) returns a new object.

    def _describe(self) -> str:
        return f"background session {self.identifier!r}"

    def _refusal_hint(self) -> str:
        return f". Call background_session({self.identifier!r}) for a new one."

    def _unfinished(self) -> str:
        unfinished = sum(1 for task in self._tasks.values() if not task.finished.is_set())
        return f"{unfinished} transfer(s) still unfinished"

    def _drained(self) -> bool:
        return all(task.finished.is_set() for task in self._tasks.values())

    def _cancel_work(self) -> None:
        with self._cond:
            unfinished = [task for task in self._tasks.values() if not task.finished.is_set()]
        for task in unfinished:
            self._cancel(task)
        ends = time.monotonic() + STOP_GRACE
        for task in unfinished:
            task.finished.wait(max(0.0, ends - time.monotonic()))

    def _suspend(self, grace: float = STOP_GRACE) -> None:
        """Stop every transfer but keep it in the journal for the next run (process exit)."""
        if not self._stop_accepting(cancel=False):
            return
        with self._cond:
            running = [task for task in self._tasks.values() if task.state is TransferState.RUNNING]
            self._stopping = True
            self._cond.notify_all()
        for task in running:
            self._runner.request_stop(task, cancel=False)
            self._runner.interrupt(task)
        ends = time.monotonic() + grace
        for task in running:
            task.finished.wait(max(0.0, ends - time.monotonic()))
        self._finish_invalidation()

    def _release(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            workers, self._workers = self._workers, []
        me = threading.current_thread()
        for worker in workers:
            if worker is not me:
                worker.join(STOP_GRACE)
        self._close_resources()
        log.debug("background session %r invalidated", self.identifier)

    def _close_resources(self) -> None:
        try:
            self._http.invalidate_and_cancel()
        finally:
            with self._cond:
                for task in self._tasks.values():
                    self._runner.release_destination(task)
                self._journal.close()
                self._lockfile.release()
                self._state = SessionState.INVALIDATED
            with _registry_lock:
                if _registry.get(self.identifier) is self:
                    del _registry[self.identifier]

    def _after_fork_in_child(self) -> None:
        self._init_lifecycle(SessionState.INVALIDATED)
        self._lockfile.forget_after_fork()
        self._journal.forget_after_fork()
        for task in self._tasks.values():
            if task.dest_lock is not None:
                task.dest_lock.forget_after_fork()
        self._workers = []
        self._idle_workers = 0
        self._queue.clear()
        self._stopping = True


@overload
def background_session(identifier: str, *, detached: Literal[False] = ..., **overrides: Any) -> BackgroundSession: ...


@overload
def background_session(identifier: str, *, detached: Literal[True], **overrides: Any) -> DetachedSession: ...


def background_session(
    identifier: str, *, detached: bool = False, **overrides: Any
) -> BackgroundSession | DetachedSession:
    """Return the live background session of ``identifier``, opening it if needed.

    The first call in a process takes the identifier's OS lock, opens its
    journal at ``<state_dir>/<identifier>.sqlite3`` and resumes every
    unfinished task of a previous run from its ``.part`` file. Later calls
    return the same object until it is invalidated.

    Args:
        identifier: letters, digits, ``.``, ``_`` and ``-``; it names the files.
        **overrides: fields of the ``background`` preset (``total_timeout``,
            ``max_concurrent_transfers``, ``state_dir``...), plus ``auth``: a
            requests auth for every task, never stored, which is how a task
            reattached after a restart gets its credentials back.
        detached: hand the transfers to the per-user agent process (POSIX
            only), which outlives this process; returns a DetachedSession
            with the same methods. See ``agent.py``.

    Raises:
        ConfigError: the identifier or an override is invalid, or the live
            session of ``identifier`` was built with other settings.
        IdentifierInUseError: another live process holds the identifier.
        TransferError: the journal is damaged, not SQLite, or from a newer version.
    """
    if detached:
        from ._client import detached_session

        return detached_session(identifier, **overrides)
    identifier = validate_identifier(identifier)
    auth = overrides.pop("auth", None)
    with _registry_lock:
        session = _registry.get(identifier)
    if session is not None and session.state is SessionState.ACTIVE:
        if overrides or auth is not None:
            wanted = resolve("background", overrides)
            if wanted != session.config or (auth is not None and auth != session._auth):
                raise ConfigError(
                    f"background session {identifier!r} is already live with other settings; "
                    "invalidate it before opening it with new ones"
                )
        return session
    with _registry_lock:
        session = _registry.get(identifier)
        if session is not None and session.state is SessionState.ACTIVE:
            return session
        session = BackgroundSession(identifier, resolve("background", overrides), auth=auth)
        _registry[identifier] = session
        return session


def _live_sessions() -> list[BackgroundSession]:
    """Every live background session of this process (for tests and process exit)."""
    with _registry_lock:
        return list(_registry.values())


def _suspend_all() -> None:
    for session in _live_sessions():
        try:
            session._suspend(grace=1.0)
        except Exception:  # pragma: no cover - best effort at interpreter exit
            log.debug("suspending %r failed", session, exc_info=True)


def _cancel_all() -> None:
    for session in _live_sessions():
        session.invalidate_and_cancel()


def _after_fork_in_child() -> None:
    sessions = list(_registry.values())
    _registry.clear()
    for session in sessions:
        session._after_fork_in_child()


_process.on_fork_child(_after_fork_in_child, order=_process.ORDER_BACKGROUND)
_process.on_exit(_suspend_all, order=_process.ORDER_BACKGROUND)
_process.on_reset(_cancel_all, order=_process.ORDER_BACKGROUND)
