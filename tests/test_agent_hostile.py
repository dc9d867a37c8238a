"""Identifiers that escape their meaning, and a hostile client of the agent (issue 22 §3, §7)."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from session_presets import ConfigError, background_session
from session_presets.background._protocol import AGENT_LOCK, AGENT_LOG, AGENT_SOCKET, MAX_LINE, WIRE_ERRORS
from session_presets.background.lockfile import validate_identifier
from session_presets.testing import MockServer

from .cli_support import run_cli
from .test_agent import BOUND, agent_env, agent_pid, process_gone, state_dir  # noqa: F401 - agent_env: autouse
from .waiting import wait_until

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(sys.platform == "win32", reason="the agent is POSIX only"),
]


def _raw(payload: bytes, *, shut_write: bool = True) -> dict[str, Any]:
    """Send ``payload`` on the agent's socket as it is, and return the one reply line, parsed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(BOUND)
        sock.connect(str(state_dir() / AGENT_SOCKET))
        try:
            if payload:
                sock.sendall(payload)
            if shut_write:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            # The agent may answer and close before it has read all of an over-long payload: its reply is
            # already in this socket's receive buffer, which the read below still gets.
            pass
        line = sock.makefile("rb").readline()
    assert line, "the agent closed the connection without a reply"
    reply: dict[str, Any] = json.loads(line)
    return reply


@pytest.mark.parametrize("identifier", ["x\n", "x\r", "\nx", "x\n\n", "x\x00"])
def test_identifier_with_a_newline_is_refused(identifier: str, tmp_path: Path) -> None:
    """'x\\n' is no identifier: refused before any file is made."""
    with pytest.raises(ConfigError, match="identifier="):
        validate_identifier(identifier)
    with pytest.raises(ConfigError, match="identifier="):
        background_session(identifier, state_dir=str(tmp_path / "state"))
    assert not (tmp_path / "state").exists() or sorted(os.listdir(tmp_path / "state")) == []


def test_agent_files_are_out_of_every_identifiers_reach() -> None:
    """The agent's socket, lock and log start with a character no identifier may start with."""
    for name in (AGENT_SOCKET, AGENT_LOCK, AGENT_LOG):
        stem = name.rsplit(".", 1)[0]
        with pytest.raises(ConfigError):
            validate_identifier(stem)


def test_identifier_agent_in_process_does_not_block_detached_sessions() -> None:
    """An in-process background_session('agent') leaves the agent free: a detached session still opens."""
    with background_session("agent") as local:
        assert (state_dir() / "agent.lock").exists()
        detached = background_session("other", detached=True)
        assert detached.tasks() == []
        assert agent_pid() != os.getpid()
        assert local.tasks() == []


def test_detached_identifier_agent_works() -> None:
    """A detached session called 'agent' opens under the agent; its lock is not the agent's."""
    detached = background_session("agent", detached=True)
    assert detached.tasks() == []
    assert (state_dir() / "agent.agent").exists()  # the marker of identifier 'agent'
    assert (state_dir() / AGENT_LOCK).read_text().strip() == str(agent_pid())


def test_agent_refuses_a_relative_destination_and_works_in_its_state_directory(tmp_path: Path) -> None:
    """A raw download with a relative dest is refused, nothing is fetched; the agent's cwd is its state dir."""
    background_session("x", detached=True)
    with MockServer() as server:
        reply = _raw(
            json.dumps({"version": 1, "op": "download", "identifier": "x", "url": server.url("/f"), "dest": "rel.bin"})
            .encode()
            + b"\n"
        )
        assert reply["ok"] is False
        assert reply["error"]["type"] == "ConfigError"
        assert "absolute path" in reply["error"]["message"]
        upload = {"version": 1, "op": "upload", "identifier": "x", "url": server.url("/u"), "src": "rel.bin"}
        assert _raw(json.dumps(upload).encode() + b"\n")["error"]["type"] == "ConfigError"
        assert server.request_count == 0
    assert os.readlink(f"/proc/{agent_pid()}/cwd") == str(state_dir())


def test_unsafe_state_directory_is_a_configuration_error_in_the_cli(tmp_path: Path) -> None:
    """download with a world-writable state directory exits 2, names the directory, sends nothing."""
    unsafe = tmp_path / "shared"
    unsafe.mkdir()
    unsafe.chmod(0o777)
    with MockServer() as server:
        result = run_cli(
            "download", server.url("/f"), "-o", str(tmp_path / "out.bin"),
            env={"SESSION_PRESETS_STATE_DIR": str(unsafe)},
        )
        assert server.request_count == 0
    assert result.returncode == 2, result.stderr
    assert f"refusing the state directory '{unsafe}'" in result.stderr
    assert "chmod 700" in result.stderr
    assert not result.stderr.startswith(server.url("/f"))


@pytest.mark.parametrize(
    "payload",
    [
        b'{"version": 1, "op": "download", "identifier": "x"}\n',  # KeyError: no url
        b'{"version": 1, "op": "wait", "identifier": "x", "task_id": 1, "timeout": "soon"}\n',
        b"[" * 100_000 + b"]" * 100_000 + b"\n",  # RecursionError in the JSON parser
        b'{"version": 1, "op": "download", "identifier": "x", "url": 5, "dest": "/tmp/x"}\n',
    ],
    ids=["missing-field", "bad-timeout", "deep-json", "url-not-a-string"],
)
def test_agent_replies_name_only_wire_error_types(payload: bytes) -> None:
    """A malformed request gets an error reply of a wire type: no KeyError, RecursionError or ValueError."""
    bg = background_session("x", detached=True)
    with MockServer() as server:
        server.enqueue(body=b"x")
        task = bg.download(server.url("/f"), str(state_dir().parent / "f.bin"))
        task.wait(BOUND)
    reply = _raw(payload)
    assert reply["ok"] is False
    assert reply["error"]["type"] in WIRE_ERRORS, reply
    for internal in ("KeyError", "RecursionError", "ValueError", "TypeError", "Traceback"):
        assert internal not in json.dumps(reply), reply


def test_agent_replies_to_an_over_long_line() -> None:
    """A line over the limit gets an error reply naming the limit, not a silent close."""
    background_session("x", detached=True)
    reply = _raw(b"x" * (MAX_LINE + 65536))
    assert reply["ok"] is False
    assert reply["error"]["type"] == "ProtocolError"
    assert str(MAX_LINE) in reply["error"]["message"]


def test_agent_times_out_a_silent_client_and_idles_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that connects and says nothing gets an error reply and is dropped; the agent then exits idle."""
    monkeypatch.setenv("SESSION_PRESETS_AGENT_IDLE", "2")
    background_session("x", detached=True)
    pid = agent_pid()
    reply = _raw(b"", shut_write=False)
    assert reply["ok"] is False
    assert "no request line within 2s" in reply["error"]["message"]
    # Held open and silent for good: the agent must still exit once idle.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(str(state_dir() / AGENT_SOCKET))
        wait_until(lambda: process_gone(pid), BOUND, "the agent to idle out while a silent client stays connected")
