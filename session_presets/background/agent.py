"""The per-user transfer agent: runs detached background sessions for processes that may exit.

Started on demand by ``background_session(identifier, detached=True)`` as
``python -m session_presets.background.agent --state-dir DIR`` in a session of
its own, so that it outlives its caller, a SIGHUP and the terminal. It holds
``<state_dir>/_agent.lock`` (one agent per state directory), serves JSON lines on
``<state_dir>/_agent.sock`` to processes of its own uid only, and runs the same
engine and journal as an in-process session. On start it resumes every
identifier marked ``<identifier>.agent``. SIGTERM suspends every task into the
journal and exits; with no unfinished task and no client for ``--idle``
seconds (``SESSION_PRESETS_AGENT_IDLE``) it exits by itself. It works in its
state directory (its cwd), so no path in a request is read relative to the cwd
of the process that started it: requests must name absolute paths.

A client has :data:`CLIENT_TIMEOUT` seconds (at most ``--idle``) to send its
request line; a silent client gets an error reply and is dropped, so it never
keeps the agent from idling out. Every error reply carries one of the wire's
error types: an unexpected failure is logged here and answered as a
TransferError, never under its internal type name.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

from .. import _process
from .._errors import ConfigError, IdentifierInUseError, TransferError
from .._lifecycle import SessionState
from .._redact import safe_url
from . import engine
from ._protocol import (
    AGENT_LOCK,
    AGENT_LOG,
    AGENT_SOCKET,
    IDLE_ENV,
    MARKER_SUFFIX,
    WIRE_ERRORS,
    ProtocolError,
    check_socket_file,
    decode,
    encode,
    peer_uid,
    read_line,
)
from .lockfile import IdentifierLock, prepare_state_dir, validate_identifier
from .task import TransferState, TransferTask

__all__ = ["DEFAULT_IDLE", "Agent", "main", "task_snapshot"]

log = logging.getLogger(__name__)

#: Seconds without unfinished tasks or clients after which the agent exits.
DEFAULT_IDLE: Final = 60.0
#: Exit status of an agent that found another agent already running.
ALREADY_RUNNING: Final = 0
#: Seconds a client has to send its request line (never more than the idle time).
CLIENT_TIMEOUT: Final = 10.0


def task_snapshot(identifier: str, task: TransferTask, rate: float | None = None) -> dict[str, Any]:
    """What a client sees of ``task``: no header, and the URL without credentials."""
    error = task.error
    return {
        "identifier": identifier,
        "id": task.id,
        "kind": task.kind,
        "url": safe_url(task.url),
        "dest": task.dest,
        "src": task.src,
        "method": task.method,
        "sha256": task.sha256,
        "created_at": task.created_at,
        "state": task.state.value,
        "bytes_done": task.bytes_done,
        "bytes_total": task.bytes_total,
        "resumed_from": task.resumed_from,
        "protocol": task.protocol,
        "upload_url": None if task.upload_url is None else safe_url(task.upload_url),
        "source_identity": task.source_identity,
        "rate": rate,
        "error": None if error is None else str(error),
        "error_type": None if error is None else type(error).__name__,
    }


class Agent:
    """The agent's sessions and its socket server; ``serve()`` runs until idle or stopped."""

    def __init__(self, state_dir: str, *, idle: float) -> None:
        self.state_dir = prepare_state_dir(state_dir)
        self.idle = idle
        self.socket_path = os.path.join(self.state_dir, AGENT_SOCKET)
        self._lock = threading.Lock()
        self._sessions: dict[str, engine.BackgroundSession] = {}
        self._clients = 0
        self._last_activity = time.monotonic()
        self._stop = threading.Event()
        # (monotonic time, bytes_done) when this agent first saw each task: the base of its rate.
        self._seen: dict[tuple[str, int], tuple[float, int]] = {}
        self._server: socket.socket | None = None

    # -- sessions ----------------------------------------------------------------

    def _marker(self, identifier: str) -> str:
        return os.path.join(self.state_dir, identifier + MARKER_SUFFIX)

    def _read_marker(self, identifier: str) -> dict[str, Any] | None:
        try:
            fd = os.open(self._marker(identifier), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TransferError(f"cannot read {self._marker(identifier)!r}: {exc}") from exc
        with os.fdopen(fd, "rb") as file:
            content = file.read(1 << 20)
        try:
            overrides = json.loads(content or b"{}")
        except ValueError:
            overrides = None
        if not isinstance(overrides, dict):
            raise TransferError(f"{self._marker(identifier)!r} does not hold a JSON object of overrides")
        return overrides

    def _write_marker(self, identifier: str, overrides: dict[str, Any]) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self._marker(identifier), flags, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(overrides, file)

    def _remove_marker(self, identifier: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._marker(identifier))

    def open(self, identifier: str, overrides: dict[str, Any] | None) -> engine.BackgroundSession:
        """The agent's live session of ``identifier``, opened (with ``overrides``) if needed."""
        identifier = validate_identifier(identifier)
        with self._lock:
            session = self._sessions.get(identifier)
            if session is not None and session.state is SessionState.INVALIDATING and overrides is None:
                # A finish that timed out leaves it invalidating: its tasks, and the next
                # finish or cancel, are still its own (as with an in-process session).
                return session
            if session is not None and session.state is SessionState.ACTIVE:
                if overrides:
                    # Raises ConfigError when the live session has other settings.
                    engine.background_session(identifier, detached=False, state_dir=self.state_dir, **overrides)
                return session
            if not overrides:
                # A session reopened without settings keeps the ones it was marked with.
                marked = self._read_marker(identifier)
                if marked is not None:
                    overrides = marked
                elif overrides is None:
                    raise ConfigError(
                        f"identifier={identifier!r} has no detached session: open it with "
                        f"background_session({identifier!r}, detached=True) first"
                    )
            session = engine.background_session(identifier, detached=False, state_dir=self.state_dir, **overrides)
            self._write_marker(identifier, overrides)
            self._sessions[identifier] = session
            for task in session.tasks():
                self._seen.setdefault((identifier, task.id), (time.monotonic(), task.bytes_done))
            return session

    def resume_marked(self) -> None:
        """Open every identifier marked in the state directory, which resumes its unfinished tasks."""
        for name in sorted(os.listdir(self.state_dir)):
            if not name.endswith(MARKER_SUFFIX):
                continue
            identifier = name[: -len(MARKER_SUFFIX)]
            try:
                self.open(identifier, None)
            except (TransferError, ConfigError, IdentifierInUseError) as exc:
                log.warning("detached session %r not resumed: %s", identifier, exc)

    def _busy(self) -> bool:
        with self._lock:
            if self._clients:
                return True
            return any(
                not task.done
                for session in self._sessions.values()
                if session.state is not SessionState.INVALIDATED
                for task in session.tasks()
            )

    def _rate(self, identifier: str, task: TransferTask) -> float | None:
        if task.state is not TransferState.RUNNING:
            return None
        started, base = self._seen.setdefault((identifier, task.id), (time.monotonic(), task.bytes_done))
        elapsed = time.monotonic() - started
        return (task.bytes_done - base) / elapsed if elapsed > 0 else None

    def _snapshot(self, identifier: str, task: TransferTask) -> dict[str, Any]:
        return task_snapshot(identifier, task, self._rate(identifier, task))

    def _task(self, identifier: str, task_id: object) -> tuple[engine.BackgroundSession, TransferTask]:
        session = self.open(identifier, None)
        for task in session.tasks():
            if task.id == task_id:
                return session, task
        raise ConfigError(f"task_id={task_id!r} is not a task of detached session {identifier!r}")

    # -- requests ----------------------------------------------------------------

    def handle(self, request: dict[str, Any]) -> Any:
        """Run one request and return its result (raises the error to send back)."""
        op = request.get("op")
        identifier = str(request.get("identifier", ""))
        if op == "ping":
            return {"pid": os.getpid()}
        if op == "open":
            overrides = request.get("overrides") or {}
            session = self.open(identifier, dict(overrides))
            return [self._snapshot(identifier, task) for task in session.tasks()]
        if op == "download":
            _absolute(request, "dest")
            session = self.open(identifier, None)
            task = session.download(
                request["url"], request["dest"], headers=request.get("headers"), sha256=request.get("sha256")
            )
            self._seen[(identifier, task.id)] = (time.monotonic(), 0)
            return self._snapshot(identifier, task)
        if op == "upload":
            _absolute(request, "src")
            session = self.open(identifier, None)
            task = session.upload(
                request["url"],
                request["src"],
                protocol=request.get("protocol", "auto"),
                method=request.get("method", "PUT"),
                headers=request.get("headers"),
            )
            self._seen[(identifier, task.id)] = (time.monotonic(), 0)
            return self._snapshot(identifier, task)
        if op == "tasks":
            session = self.open(identifier, None)
            return [self._snapshot(identifier, task) for task in session.tasks()]
        if op == "task":
            _session, task = self._task(identifier, request.get("task_id"))
            return self._snapshot(identifier, task)
        if op == "wait":
            _session, task = self._task(identifier, request.get("task_id"))
            timeout = request.get("timeout")
            task.wait(None if timeout is None else float(timeout))
            return self._snapshot(identifier, task)
        if op == "cancel":
            _session, task = self._task(identifier, request.get("task_id"))
            task.cancel()
            return self._snapshot(identifier, task)
        if op == "forget":
            session, task = self._task(identifier, request.get("task_id"))
            session.forget(task)
            return None
        if op == "finish":
            session = self.open(identifier, None)
            timeout = request.get("timeout")
            session.finish_tasks_and_invalidate(None if timeout is None else float(timeout))
            self._remove_marker(identifier)
            return [self._snapshot(identifier, task) for task in session.tasks()]
        if op == "cancel_all":
            session = self.open(identifier, None)
            session.invalidate_and_cancel()
            self._remove_marker(identifier)
            return [self._snapshot(identifier, task) for task in session.tasks()]
        if op == "list":
            self.resume_marked()
            with self._lock:
                sessions = list(self._sessions.items())
            return [
                self._snapshot(name, task)
                for name, session in sessions
                if session.state is not SessionState.INVALIDATED
                for task in session.tasks()
            ]
        if op == "stop":
            self._stop.set()
            return {"pid": os.getpid()}
        raise ProtocolError(f"op={op!r} is not a request this agent knows")

    def _serve_client(self, conn: socket.socket) -> None:
        try:
            with conn:
                uid = peer_uid(conn)
                if uid is not None and uid != os.getuid():
                    log.warning("refused a client of uid %d on %r", uid, self.socket_path)
                    conn.sendall(
                        encode({"ok": False, "error": {"type": "TransferError", "message": "refused: another user"}})
                    )
                    return
                reply = self._answer(conn)
                if reply is not None:
                    with contextlib.suppress(OSError):
                        conn.sendall(encode(reply))
        except OSError:
            log.debug("client connection failed", exc_info=True)
        finally:
            with self._lock:
                self._clients -= 1
                self._last_activity = time.monotonic()

    def _answer(self, conn: socket.socket) -> dict[str, Any] | None:
        """Read one request from ``conn`` and return the reply (None: the client left first)."""
        timeout = min(CLIENT_TIMEOUT, self.idle)
        conn.settimeout(timeout)
        try:
            line = read_line(conn)
        except TimeoutError:
            return _error_reply(ProtocolError(f"no request line within {timeout:g}s: the connection is closed"))
        except ProtocolError as exc:  # an over-long line
            return _error_reply(exc)
        if not line:
            return None
        conn.settimeout(None)  # a "wait" request may take as long as its task
        try:
            request = decode(line, sender="client")
            return {"ok": True, "result": self.handle(request)}
        except Exception as exc:
            return _error_reply(exc)

    # -- lifecycle ---------------------------------------------------------------

    def bind(self) -> None:
        """Replace a stale socket file (the lock proves its agent is gone) and listen on a fresh one."""
        if check_socket_file(self.socket_path):
            os.unlink(self.socket_path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            server.bind(self.socket_path)
        finally:
            os.umask(old_umask)
        server.listen(16)
        server.settimeout(0.2)
        self._server = server

    def stop(self) -> None:
        """Ask ``serve()`` to return (signal handlers and the ``stop`` request)."""
        self._stop.set()

    def serve(self) -> None:
        """Accept clients until stopped, or idle for ``idle`` seconds with no unfinished task."""
        assert self._server is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                if self._busy():
                    with self._lock:
                        self._last_activity = time.monotonic()
                elif time.monotonic() - self._last_activity >= self.idle:
                    log.debug("agent idle for %.1fs: exiting", self.idle)
                    return
                continue
            conn.settimeout(None)
            with self._lock:
                self._clients += 1
                self._last_activity = time.monotonic()
            _process.start_thread(self._serve_client, name="session-presets-agent-client", args=(conn,))

    def close(self) -> None:
        """Stop listening, remove the socket, and suspend every task into the journal."""
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)
            server.close()
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session._suspend(grace=engine.STOP_GRACE)


def _absolute(request: dict[str, Any], field: str) -> None:
    """Refuse a request whose path ``field`` is not absolute: the agent's cwd is nobody's."""
    path = request.get(field)
    if not isinstance(path, str) or not os.path.isabs(path):
        raise ConfigError(f"{field}={path!r} is invalid: the transfer agent needs an absolute path")


def _error_reply(exc: Exception) -> dict[str, Any]:
    """The error reply for ``exc``: its nearest wire error type, never an internal one."""
    for cls in type(exc).__mro__:
        if WIRE_ERRORS.get(cls.__name__) is cls:
            return {"ok": False, "error": {"type": cls.__name__, "message": str(exc)}}
    log.debug("request failed with %s", type(exc).__name__, exc_info=exc)
    if isinstance(exc, (KeyError, TypeError, ValueError)):
        # A field missing or of the wrong type in a request that parsed.
        message = f"the request is malformed: a field is missing or has the wrong type ({exc!s})"
        return {"ok": False, "error": {"type": "ProtocolError", "message": message}}
    log.error("request failed unexpectedly", exc_info=exc)
    message = f"the transfer agent failed on this request; its log ({AGENT_LOG} in the state directory) says why"
    return {"ok": False, "error": {"type": "TransferError", "message": message}}


def _idle_from(value: str | None, source: str) -> float:
    if value is None or value == "":
        return DEFAULT_IDLE
    try:
        idle = float(value)
    except ValueError:
        idle = -1.0
    if not idle > 0:
        raise ConfigError(f"{source}={value!r} is invalid: expected a number of seconds > 0, such as 60")
    return idle


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent for a state directory; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m session_presets.background.agent")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--idle", default=None, help=f"seconds idle before exiting (default ${IDLE_ENV} or 60)")
    args = parser.parse_args(argv)
    source, value = ("--idle", args.idle) if args.idle is not None else (IDLE_ENV, os.environ.get(IDLE_ENV))
    idle = _idle_from(value, source)
    state_dir = prepare_state_dir(os.path.abspath(args.state_dir))
    os.chdir(state_dir)
    try:
        lock = IdentifierLock(os.path.join(state_dir, AGENT_LOCK), "agent")
    except IdentifierInUseError:
        return ALREADY_RUNNING
    agent = Agent(state_dir, idle=idle)
    try:
        # The agent is in a session of its own; a hang-up of the caller's terminal is not for it.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda *_: agent.stop())
        signal.signal(signal.SIGINT, lambda *_: agent.stop())
        agent.bind()
        agent.resume_marked()
        agent.serve()
    finally:
        agent.close()
        lock.release()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s agent[%(process)d] %(levelname)s %(message)s")
    sys.exit(main())
