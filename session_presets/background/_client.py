"""The client side of detached background sessions: proxies that talk to the per-user agent.

``background_session(identifier, detached=True)`` returns a :class:`DetachedSession`:
the same methods as a BackgroundSession, run by the agent process (see
``agent.py``), which is started on demand and outlives the caller.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any, Final

from .. import _process
from .._config import PresetConfig
from .._errors import ConfigError, TransferError
from .._lifecycle import SessionLifecycle
from .._presets import resolve
from ._protocol import AGENT_LOG, AGENT_SOCKET, check_socket_file, decode, encode, error_from_wire, peer_uid, read_line
from .lockfile import default_state_dir, prepare_state_dir, validate_identifier
from .task import FINISHED, TransferState

__all__ = ["DetachedSession", "DetachedTask", "agent_request", "detached_session", "stop_agent"]

#: Seconds a client waits for an agent it started to listen.
AGENT_START_TIMEOUT: Final = 30.0

#: True where detached sessions work: Unix domain sockets, flock and setsid.
_POSIX: Final = os.name == "posix" and hasattr(socket, "AF_UNIX")

# Agents this process started, kept so they are reaped (no zombie, no ResourceWarning).
_spawned: list[subprocess.Popen[bytes]] = []
_spawn_lock = _process.fork_safe_lock()


def _require_posix() -> None:
    if not _POSIX:
        raise ConfigError(
            f"detached=True is not supported on this platform ({sys.platform}): the transfer agent needs POSIX "
            "(Unix domain sockets, flock, setsid). Use detached=False, which runs transfers in this process."
        )


def _check_private_dir(state_dir: str) -> str:
    state_dir = prepare_state_dir(state_dir)
    mode = stat.S_IMODE(os.stat(state_dir).st_mode)
    if mode & 0o077:
        raise TransferError(
            f"refusing the state directory {state_dir!r} for detached transfers: its mode is {mode:04o}, "
            f"not 0700, so another user could reach the agent's socket. Run: chmod 700 {state_dir!r}"
        )
    return state_dir


def _reap() -> None:
    with _spawn_lock:
        _spawned[:] = [proc for proc in _spawned if proc.poll() is None]


def _spawn_agent(state_dir: str) -> subprocess.Popen[bytes]:
    log_path = os.path.join(state_dir, AGENT_LOG)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        log_fd = os.open(log_path, flags, 0o600)
    except OSError as exc:
        raise TransferError(f"cannot open the agent log {log_path!r}: {exc}") from exc
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "session_presets.background.agent", "--state-dir", state_dir],
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(log_fd)
    with _spawn_lock:
        _spawned.append(proc)
    return proc


def _connect(path: str, timeout: float | None) -> socket.socket | None:
    """A connection to the agent at ``path``, or None when no agent listens there."""
    if not check_socket_file(path):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return None  # a stale socket of a dead agent: the next agent replaces it
        raise TransferError(f"cannot connect to the transfer agent at {path!r}: {exc}") from exc
    uid = peer_uid(sock)
    if uid is not None and uid != os.getuid():
        sock.close()
        raise TransferError(f"refusing the transfer agent at {path!r}: it runs as uid {uid}, not {os.getuid()}")
    return sock


def _ensure_agent(state_dir: str) -> socket.socket:
    """A connection to the state directory's agent, starting one if none listens."""
    path = os.path.join(state_dir, AGENT_SOCKET)
    sock = _connect(path, None)
    if sock is not None:
        return sock
    _reap()
    proc = _spawn_agent(state_dir)
    deadline = time.monotonic() + AGENT_START_TIMEOUT
    while time.monotonic() < deadline:
        sock = _connect(path, None)
        if sock is not None:
            return sock
        status = proc.poll()
        # Status 0: another agent won the lock and is about to listen; keep trying.
        if status is not None and status != 0:
            log_path = os.path.join(state_dir, AGENT_LOG)
            raise TransferError(f"the transfer agent exited with status {status} before listening; see {log_path!r}")
        time.sleep(0.05)
    raise TransferError(f"the transfer agent did not listen on {path!r} within {AGENT_START_TIMEOUT:g}s")


def agent_request(state_dir: str, op: str, *, start: bool = True, **fields: Any) -> Any:
    """Send one request to the agent of ``state_dir`` and return its result.

    Args:
        state_dir: the state directory (mode 0700) holding the agent's socket.
        op: the request.
        start: start an agent if none runs; when False and none runs, raise
            ConnectionRefusedError.
        **fields: the request's fields (JSON values).

    Raises:
        ConfigError, TransferError...: what the agent raised, with its message.
        ProtocolError: the agent speaks another protocol version.
    """
    _require_posix()
    state_dir = _check_private_dir(state_dir)
    try:
        line = encode({"op": op, **fields})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{op}: an argument cannot be sent to the transfer agent: {exc}") from exc
    for _attempt in range(3):
        if start:
            sock = _ensure_agent(state_dir)
        else:
            found = _connect(os.path.join(state_dir, AGENT_SOCKET), None)
            if found is None:
                raise ConnectionRefusedError(errno.ECONNREFUSED, "no transfer agent runs", state_dir)
            sock = found
        with sock:
            try:
                sock.sendall(line)
                answer = read_line(sock)
            except OSError:
                answer = b""
        if answer:
            reply = decode(answer, sender="transfer agent")
            if not reply.get("ok"):
                raise error_from_wire(dict(reply.get("error") or {}))
            return reply.get("result")
        # The agent died (SIGKILL) or stopped under us: the next one resumes from the journal.
        if not start:
            raise ConnectionRefusedError(errno.ECONNRESET, "the transfer agent closed the connection", state_dir)
    raise TransferError(f"the transfer agent of {state_dir!r} closed the connection three times in a row")


def stop_agent(state_dir: str | None = None, *, timeout: float = 10.0) -> int | None:
    """Ask the agent to suspend its tasks into the journal and exit; return its pid, or None if none ran."""
    state_dir = state_dir or resolve("background", {}).state_dir or default_state_dir()
    try:
        result = agent_request(state_dir, "stop", start=False)
    except ConnectionRefusedError:
        return None
    path = os.path.join(state_dir, AGENT_SOCKET)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and os.path.exists(path):
        time.sleep(0.05)
    _reap()
    return int(result["pid"])


class DetachedTask:
    """A task run by the agent: the TransferTask API, read from the agent.

    ``state``, ``bytes_done``, ``bytes_total`` and ``error`` ask the agent each
    time until the task is finished; ``wait`` blocks on the agent's socket.
    """

    def __init__(self, session: DetachedSession, snapshot: dict[str, Any]) -> None:
        self._session = session
        self.id: int = snapshot["id"]
        self.kind: str = snapshot["kind"]
        self.url: str = snapshot["url"]
        self.dest: str | None = snapshot["dest"]
        self.src: str | None = snapshot["src"]
        self.method: str = snapshot["method"]
        self.sha256: str | None = snapshot["sha256"]
        self.created_at: float = snapshot["created_at"]
        #: The byte the agent took the task up at: what an earlier run had committed.
        self.resumed_from: int = snapshot["resumed_from"]
        self._snapshot = snapshot

    def _update(self, snapshot: dict[str, Any]) -> DetachedTask:
        self._snapshot = snapshot
        return self

    def _fresh(self) -> dict[str, Any]:
        if TransferState(self._snapshot["state"]) not in FINISHED:
            self._update(self._session._request("task", task_id=self.id))
        return self._snapshot

    @property
    def path(self) -> str:
        """The local file of the task: ``dest`` for a download, ``src`` for an upload."""
        return self.dest if self.dest is not None else str(self.src)

    @property
    def state(self) -> TransferState:
        """Where the task is, as the agent sees it now."""
        return TransferState(self._fresh()["state"])

    @property
    def bytes_done(self) -> int:
        """Bytes transferred so far."""
        return int(self._fresh()["bytes_done"])

    @property
    def bytes_total(self) -> int | None:
        """The full size in bytes, once known."""
        total = self._fresh()["bytes_total"]
        return None if total is None else int(total)

    @property
    def protocol(self) -> str:
        """An upload's resume protocol: "tus", "ietf", "none", or "auto" until the agent asked the server."""
        return str(self._fresh().get("protocol", "none"))

    @property
    def upload_url(self) -> str | None:
        """The upload resource of a resumable upload, once created (shown without credentials)."""
        return self._fresh().get("upload_url")

    @property
    def source_identity(self) -> str | None:
        """An upload's ``"st_dev:st_ino:st_size:st_mtime_ns"`` when it first read its source (else None)."""
        value = self._fresh().get("source_identity")
        return None if value is None else str(value)

    @property
    def rate(self) -> float | None:
        """Bytes per second since the agent took the task up, while it runs; else None."""
        rate = self._fresh()["rate"]
        return None if rate is None else float(rate)

    @property
    def error(self) -> Exception | None:
        """Why the task failed, or None."""
        snapshot = self._fresh()
        if snapshot["error"] is None:
            return None
        return error_from_wire({"type": snapshot["error_type"], "message": snapshot["error"]})

    @property
    def done(self) -> bool:
        """True once the task is completed, failed or cancelled."""
        return self.state in FINISHED

    def wait(self, timeout: float | None = None) -> DetachedTask:
        """Block until the task is finished or ``timeout`` seconds have passed; the agent answers when it ends.

        Returns:
            The task itself.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while TransferState(self._snapshot["state"]) not in FINISHED:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._update(self._session._request("wait", task_id=self.id, timeout=left))
            if deadline is not None and time.monotonic() >= deadline:
                break
        return self

    def cancel(self) -> None:
        """Stop the task and delete its ``.part`` file; a finished task is left as it is."""
        self._update(self._session._request("cancel", task_id=self.id))

    def __repr__(self) -> str:
        snapshot = self._snapshot
        total = "?" if snapshot["bytes_total"] is None else str(snapshot["bytes_total"])
        return (
            f"<DetachedTask {self.id} {self.kind} {self.url} state={snapshot['state']} "
            f"{snapshot['bytes_done']}/{total}>"
        )


class DetachedSession(SessionLifecycle):
    """A background session run by the per-user agent: it survives this process.

    Get one with ``background_session(identifier, detached=True)``. Every
    method sends a request to the agent over its Unix domain socket.

    Attributes:
        identifier: the name of the session.
        config: the effective ``background`` preset, as this process resolved it.
        state_dir: the state directory holding the journal and the agent's socket.
        journal_path: ``<state_dir>/<identifier>.sqlite3``, written by the agent.
    """

    _WORK = "transfers"

    def __init__(self, identifier: str, config: PresetConfig, state_dir: str, overrides: dict[str, Any]) -> None:
        self.identifier = identifier
        self.config = config
        self.state_dir = state_dir
        self.journal_path = os.path.join(state_dir, f"{identifier}.sqlite3")
        self._init_lifecycle()
        self._tasks: dict[int, DetachedTask] = {}
        self._sync(self._request("open", overrides=overrides))

    def _request(self, op: str, **fields: Any) -> Any:
        return agent_request(self.state_dir, op, identifier=self.identifier, **fields)

    def _sync(self, snapshots: list[dict[str, Any]]) -> list[DetachedTask]:
        tasks = []
        for snapshot in snapshots:
            task = self._tasks.get(snapshot["id"])
            if task is None:
                task = self._tasks[snapshot["id"]] = DetachedTask(self, snapshot)
            else:
                task._update(snapshot)
            tasks.append(task)
        return tasks

    def __repr__(self) -> str:
        return f"<DetachedSession {self.identifier!r} state={self._state.value}>"

    def download(
        self,
        url: str,
        dest: str | os.PathLike[str],
        *,
        headers: Mapping[str, str] | None = None,
        sha256: str | None = None,
    ) -> DetachedTask:
        """Have the agent download ``url`` into ``dest`` (see BackgroundSession.download)."""
        self._require_active()
        dest_path = os.path.abspath(os.fspath(dest))
        snapshot = self._request(
            "download", url=url, dest=dest_path, headers=None if headers is None else dict(headers), sha256=sha256
        )
        return self._sync([snapshot])[0]

    def upload(
        self,
        url: str,
        src: str | os.PathLike[str],
        *,
        protocol: str = "auto",
        method: str = "PUT",
        headers: Mapping[str, str] | None = None,
    ) -> DetachedTask:
        """Have the agent send the file ``src`` to ``url``, resumably (see BackgroundSession.upload).

        With ``protocol="tus"`` or ``"ietf"`` the protocol decides the methods;
        ``method`` applies to ``protocol="none"``. ``headers`` travel to the
        agent over its private socket and stay in its memory: the journal keeps
        only Accept and Accept-Language, so a task the agent resumes after a
        restart has the session's ``auth``, never these headers' credentials.
        """
        self._require_active()
        src_path = os.path.abspath(os.fspath(src))
        snapshot = self._request(
            "upload",
            url=url,
            src=src_path,
            protocol=protocol,
            method=method,
            headers=None if headers is None else dict(headers),
        )
        return self._sync([snapshot])[0]

    def tasks(self) -> list[DetachedTask]:
        """Every task of the session, as the agent knows them now, oldest first."""
        return self._sync(self._request("tasks"))

    def forget(self, task: DetachedTask) -> None:
        """Drop ``task`` from the session and its journal, cancelling it first if unfinished."""
        if self._tasks.get(task.id) is not task:
            raise ConfigError(f"{task!r} does not belong to detached session {self.identifier!r}")
        self._request("forget", task_id=task.id)
        del self._tasks[task.id]

    # The steps are SessionLifecycle's; the agent waits for, cancels and closes
    # the session, and this object is ACTIVE until it finished or cancelled it.

    def _describe(self) -> str:
        return f"detached session {self.identifier!r}"

    def _refusal_hint(self) -> str:
        return f". Call background_session({self.identifier!r}, detached=True) for a new one."

    def _wait_for_work(self, timeout: float | None) -> None:
        # The agent waits, and closes the session when the tasks are done (or raises
        # InvalidationTimeoutError, and the session stays invalidating).
        self._sync(self._request("finish", timeout=timeout))

    def _cancel_work(self) -> None:
        self._sync(self._request("cancel_all"))

    def _release(self) -> None:
        """Nothing: the agent closed the session when it finished or cancelled it."""


def detached_session(identifier: str, **overrides: Any) -> DetachedSession:
    """Attach to (or start) the agent and open ``identifier`` there; see ``background_session``.

    Raises:
        ConfigError: the platform is not POSIX, an override is invalid or not a
            plain value, or ``auth=`` was given (it cannot leave this process).
        TransferError: the state directory or the agent's socket is unsafe, or
            the agent cannot be started.
    """
    _require_posix()
    identifier = validate_identifier(identifier)
    if overrides.get("auth") is not None:
        raise ConfigError(
            "auth= is refused with detached=True: credentials never leave this process. "
            "Pass per-task headers= instead, which the agent keeps in memory only"
        )
    overrides.pop("auth", None)
    config = resolve("background", overrides)  # validates every override here, with its name
    state_dir = os.path.abspath(config.state_dir or default_state_dir())
    wire = {name: value for name, value in overrides.items() if name != "state_dir"}
    try:
        json.dumps(wire)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"detached=True: overrides must be plain values (numbers, strings): {exc}") from exc
    return DetachedSession(identifier, config, _check_private_dir(state_dir), wire)


def _after_fork_in_child() -> None:
    # The child does not own the parent's agents: it must not wait on them.
    _spawned.clear()


_process.on_fork_child(_after_fork_in_child, order=_process.ORDER_BACKGROUND)
