"""The ``session-presets upload`` command, in a child process, against ResumableUploadRoute."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from session_presets.testing import MockResponse, MockServer, ResumableUploadRoute

from .cli_support import run_cli
from .test_agent import agent_env  # noqa: F401 - autouse: no agent outlives a test
from .test_background import MIB, make_data

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(sys.platform == "win32", reason="POSIX agent")]


@pytest.fixture
def server() -> Iterator[MockServer]:
    """A started MockServer."""
    with MockServer() as mock:
        yield mock


@pytest.fixture
def route(server: MockServer) -> ResumableUploadRoute:
    """Both protocols at /files."""
    route = ResumableUploadRoute()
    route.install(server, "/files")
    return route


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A 1 MiB file to send."""
    path = tmp_path / "report.bin"
    path.write_bytes(make_data(MIB, seed=9))
    return path


@pytest.mark.parametrize("protocol", ["tus", "ietf"])
def test_upload_then_rerun_sends_nothing(
    server: MockServer, route: ResumableUploadRoute, src: Path, protocol: str
) -> None:
    """The command uploads the file; the same command again sees it complete and unchanged and sends nothing."""
    result = run_cli("upload", str(src), server.url("/files"), "--protocol", protocol)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"uploaded {src}: {MIB} bytes in ") and f"protocol {protocol}" in result.stdout
    assert bytes(route.upload().data) == src.read_bytes()
    seen = len(server.requests)
    again = run_cli("upload", str(src), server.url("/files"), "--protocol", protocol)
    assert again.returncode == 0, again.stderr
    assert "is already uploaded" in again.stdout and "nothing sent" in again.stdout
    assert len(server.requests) == seen


def test_rerun_after_the_file_changed_uploads_again(server: MockServer, route: ResumableUploadRoute, src: Path) -> None:
    """A changed file is a new upload: a second resource holds the new bytes."""
    assert run_cli("upload", str(src), server.url("/files")).returncode == 0
    src.write_bytes(make_data(MIB // 2, seed=10))
    result = run_cli("upload", str(src), server.url("/files"))
    assert result.returncode == 0, result.stderr
    assert len(route.uploads) == 2 and bytes(route.upload(2).data) == src.read_bytes()


def test_plain_server_gets_a_put_with_auto(server: MockServer, src: Path) -> None:
    """--protocol auto against a server offering neither protocol sends one PUT of the whole file."""
    server.route("/plain", MockResponse(204), method="OPTIONS")
    server.route("/plain", MockResponse(201), method="PUT")
    result = run_cli("upload", str(src), server.url("/plain"))
    assert result.returncode == 0, result.stderr
    assert "protocol none" in result.stdout
    assert [request.method for request in server.requests] == ["OPTIONS", "PUT"]
    assert server.requests[1].body == src.read_bytes()


def test_creation_refused_exits_1(server: MockServer, src: Path) -> None:
    """A 403 to the creation POST fails the command with exit status 1 and the status in the message."""
    server.route("/files", MockResponse(403))
    result = run_cli("upload", str(src), server.url("/files"), "--protocol", "tus")
    assert result.returncode == 1
    assert "HTTP 403" in result.stderr


def test_missing_file_exits_2(server: MockServer, tmp_path: Path) -> None:
    """A FILE that does not exist is a usage error naming it."""
    result = run_cli("upload", str(tmp_path / "nope.bin"), server.url("/files"))
    assert result.returncode == 2
    assert "nope.bin" in result.stderr and "not an existing file" in result.stderr
    assert server.requests == []


def test_detach_prints_identifier_and_the_agent_uploads(
    server: MockServer, route: ResumableUploadRoute, src: Path
) -> None:
    """--detach hands the upload to the agent; 'transfers wait ID' sees it complete, the server holds the file."""
    result = run_cli("upload", str(src), server.url("/files"), "--protocol", "ietf", "--detach")
    assert result.returncode == 0, result.stderr
    identifier = result.stdout.strip()
    assert identifier.startswith("cli-up-")
    waited = run_cli("transfers", "wait", identifier)
    assert waited.returncode == 0, waited.stderr
    assert "completed" in waited.stdout
    assert bytes(route.upload().data) == src.read_bytes()
    again = run_cli("upload", str(src), server.url("/files"), "--protocol", "ietf", "--detach")
    assert again.returncode == 0 and "already uploaded" in again.stderr
    assert len(route.uploads) == 1
