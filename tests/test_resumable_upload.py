"""Resumable background uploads (tus 1.0, the IETF draft) against ResumableUploadRoute on a real socket."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from session_presets import ConfigError, TransferError, TransferState, background_session
from session_presets.background.engine import BackgroundSession
from session_presets.testing import MockResponse, MockServer, ResumableUploadRoute

from .test_background import FAST, MIB, make_data
from .waiting import wait_until

#: How long a test waits for something that takes a second or two.
BOUND = 20.0

pytestmark = pytest.mark.timeout(60)

PROTOCOLS = ["tus", "ietf"]


@pytest.fixture
def server() -> Iterator[MockServer]:
    """A started MockServer."""
    with MockServer() as mock:
        yield mock


@pytest.fixture
def route(server: MockServer) -> ResumableUploadRoute:
    """A ResumableUploadRoute offering both protocols at /files."""
    route = ResumableUploadRoute()
    route.install(server, "/files")
    return route


def write_source(tmp_path: Path, size: int, seed: int = 1) -> tuple[Path, bytes]:
    """Write ``size`` reproducible bytes to a file; return its path and contents."""
    data = make_data(size, seed)
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    return path, data


def open_bg(identifier: str = "up", **overrides: Any) -> BackgroundSession:
    """A background session with fast retries."""
    return background_session(identifier, **{**FAST, **overrides})


def methods(server: MockServer) -> list[str]:
    """The methods the server saw, in order."""
    return [request.method for request in server.requests]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_upload_completes_byte_identical(
    server: MockServer, route: ResumableUploadRoute, tmp_path: Path, protocol: str
) -> None:
    """A resumable upload creates a resource, PATCHes the file, and the server holds the same bytes."""
    src, data = write_source(tmp_path, 2 * MIB)
    with open_bg() as bg:
        task = bg.upload(server.url("/files"), src, protocol=protocol).wait(30)
        assert task.state is TransferState.COMPLETED, task.error
        assert task.upload_url == server.url("/uploads/1")
        assert task.bytes_done == task.bytes_total == len(data)
    upload = route.upload()
    assert upload.protocol == protocol
    assert bytes(upload.data) == data and upload.complete and upload.received_once()
    assert methods(server) == ["POST", "PATCH"]
    create, patch = server.requests
    if protocol == "tus":
        assert create.header("Tus-Resumable") == "1.0.0" and create.header("Upload-Length") == str(len(data))
        assert patch.header("Content-Type") == "application/offset+octet-stream"
    else:
        assert create.header("Upload-Complete") == "?0" and create.header("Upload-Length") == str(len(data))
        assert patch.header("Content-Type") == "application/partial-upload"
        assert patch.header("Upload-Complete") == "?1"
    assert patch.header("Upload-Offset") == "0"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_drop_at_40_percent_resumes_from_the_server_offset(
    server: MockServer, route: ResumableUploadRoute, tmp_path: Path, protocol: str
) -> None:
    """The connection drops at 40%: HEAD, then PATCH from the server's offset; every byte received once."""
    src, data = write_source(tmp_path, 4 * MIB)
    route.drop_after = len(data) * 4 // 10
    with open_bg() as bg:
        task = bg.upload(server.url("/files"), src, protocol=protocol).wait(30)
        assert task.state is TransferState.COMPLETED, task.error
    upload = route.upload()
    assert bytes(upload.data) == data
    assert upload.received_once()
    assert upload.appends == [(0, len(data) * 4 // 10), (len(data) * 4 // 10, len(data) - len(data) * 4 // 10)]
    assert methods(server) == ["POST", "PATCH", "HEAD", "PATCH"]
    assert server.requests[3].header("Upload-Offset") == str(len(data) * 4 // 10)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_offset_mismatch_reads_the_offset_again(
    server: MockServer, route: ResumableUploadRoute, tmp_path: Path, protocol: str
) -> None:
    """A 409 to PATCH makes the client HEAD the resource and append from the offset it reports."""
    src, data = write_source(tmp_path, 1 * MIB)
    route.mismatch = 1
    with open_bg() as bg:
        task = bg.upload(server.url("/files"), src, protocol=protocol).wait(30)
        assert task.state is TransferState.COMPLETED, task.error
    assert methods(server) == ["POST", "PATCH", "HEAD", "PATCH"]
    assert bytes(route.upload().data) == data


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_lost_upload_restarts_with_a_new_resource(
    server: MockServer, route: ResumableUploadRoute, tmp_path: Path, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A 404 on HEAD (the server lost the upload) starts over with a new resource, and says so in the log."""
    src, data = write_source(tmp_path, 2 * MIB)
    route.drop_after = MIB

    with open_bg() as bg, caplog.at_level(logging.DEBUG, logger="session_presets.background._upload"):
        # The drop leaves upload 1 at 1 MiB; losing it before the HEAD makes the HEAD answer 404.
        original = route._receive

        def receive_then_lose(exchange: Any, upload: Any) -> bool:
            kept = original(exchange, upload)
            if not kept:
                route.lose_uploads()
            return kept

        route._receive = receive_then_lose  # type: ignore[method-assign]
        task = bg.upload(server.url("/files"), src, protocol=protocol).wait(30)
        assert task.state is TransferState.COMPLETED, task.error
        assert task.upload_url == server.url("/uploads/2")
    assert methods(server) == ["POST", "PATCH", "HEAD", "POST", "PATCH"]
    assert bytes(route.upload(2).data) == data and route.upload(2).received_once()
    assert bytes(route.upload(1).data) == data[:MIB]
    assert any("lost upload resource" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_offset_ahead_of_what_was_sent_is_refused(
    server: MockServer, route: ResumableUploadRoute, tmp_path: Path, protocol: str
) -> None:
    """A server whose HEAD reports more than the client ever sent fails the task; nothing completes."""
    # At most 1 MiB, plus what the kernel buffers hold (4 MiB to send, 32 MiB to receive at most
    # here), can have left the client when the drop comes: far less than the 64 MiB claimed.
    src, data = write_source(tmp_path, 64 * MIB)
    route.drop_after = MIB
    route.offset_ahead = len(data) - MIB  # the HEAD claims the whole file
    with open_bg() as bg:
        task = bg.upload(server.url("/files"), src, protocol=protocol).wait(30)
        assert task.state is TransferState.FAILED
        assert isinstance(task.error, TransferError)
        assert "refused" in str(task.error) and "reports offset" in str(task.error)
    assert methods(server) == ["POST", "PATCH", "HEAD"]
    assert not route.upload().complete


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_source_changed_mid_upload_fails_and_terminates(
    server: MockServer, route: ResumableUploadRoute, tmp_path: Path, protocol: str
) -> None:
    """A source file that changes during the upload fails the task, naming the file; the resource is deleted."""
    # The client reads 1 MiB pieces; with the kernel's buffers (at most 36 MiB here) it is still
    # reading the 64 MiB file when the server has its first MiB.
    src, _ = write_source(tmp_path, 64 * MIB)
    route.throttle = 8 * MIB
    with open_bg() as bg:
        task = bg.upload(server.url("/files"), src, protocol=protocol)
        wait_until(lambda: route.received() > MIB, BOUND, "the first MiB at the server")
        with open(src, "r+b") as file:
            file.seek(60 * MIB)
            file.write(b"changed")
        os.utime(src, ns=(time.time_ns(), time.time_ns() + 10**9))
        route.throttle = None
        task.wait(30)
        assert task.state is TransferState.FAILED
        assert str(src) in str(task.error) and "changed" in str(task.error) and "mtime_ns" in str(task.error)
    assert route.upload().terminated and not route.upload().complete
    assert methods(server)[-1] == "DELETE"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_source_changed_between_runs_fails(
    server: MockServer, route: ResumableUploadRoute, tmp_path: Path, protocol: str
) -> None:
    """A source that changed between a suspension and the resume fails the task before any PATCH."""
    src, _ = write_source(tmp_path, 4 * MIB)
    route.throttle = 2 * MIB
    bg = open_bg()
    task = bg.upload(server.url("/files"), src, protocol=protocol)
    wait_until(lambda: route.received() > MIB // 4, BOUND, "the first bytes at the server")
    bg._suspend()
    route.throttle = None
    src.write_bytes(make_data(4 * MIB, seed=2))
    count = len(server.requests)
    with open_bg() as again:
        (task,) = again.tasks()
        task.wait(30)
        assert task.state is TransferState.FAILED
        assert str(src) in str(task.error) and "changed" in str(task.error)
    assert [request.method for request in server.requests[count:]] == ["DELETE"]


def test_auto_discovers_tus_and_ietf(server: MockServer, tmp_path: Path) -> None:
    """protocol='auto' sends OPTIONS and uses the protocol the server announces."""
    src, data = write_source(tmp_path, 64 * 1024)
    ietf_only = ResumableUploadRoute(protocols=["ietf"])
    ietf_only.install(server, "/ietf")
    tus = ResumableUploadRoute(protocols=["tus"], prefix="/tus-uploads/")
    tus.install(server, "/tus")
    with open_bg() as bg:
        first = bg.upload(server.url("/ietf"), src).wait(30)
        second = bg.upload(server.url("/tus"), src).wait(30)
        assert (first.protocol, second.protocol) == ("ietf", "tus")
        assert first.state is second.state is TransferState.COMPLETED
    assert bytes(ietf_only.upload().data) == bytes(tus.upload().data) == data
    assert [request.method for request in server.requests] == ["OPTIONS", "POST", "PATCH"] * 2


def test_auto_falls_back_to_a_plain_upload(
    server: MockServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A server announcing neither protocol gets one plain PUT of the file, and the log says why."""
    src, data = write_source(tmp_path, 64 * 1024)
    server.route("/plain", lambda exchange: exchange.reply(204 if exchange.command == "OPTIONS" else 201))
    with open_bg() as bg, caplog.at_level(logging.DEBUG, logger="session_presets.background._upload"):
        task = bg.upload(server.url("/plain"), src).wait(30)
        assert task.state is TransferState.COMPLETED and task.protocol == "none" and task.upload_url is None
    assert [request.method for request in server.requests] == ["OPTIONS", "PUT"]
    assert server.requests[1].body == data
    assert any("uploading without resume" in record.getMessage() for record in caplog.records)


def test_ietf_interim_104_location_is_used(server: MockServer, tmp_path: Path) -> None:
    """A 104 that http.client reads as final: its Location is used, the offset comes from HEAD."""
    src, data = write_source(tmp_path, 256 * 1024)
    route = ResumableUploadRoute(protocols=["ietf"], send_104=True)
    route.install(server, "/files")
    with open_bg() as bg:
        task = bg.upload(server.url("/files"), src, protocol="ietf").wait(30)
        assert task.state is TransferState.COMPLETED, task.error
        assert task.upload_url == server.url("/uploads/1")
    assert [request.method for request in server.requests] == ["POST", "HEAD", "PATCH"]
    assert bytes(route.upload().data) == data


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cancel_terminates_the_upload(
    server: MockServer, route: ResumableUploadRoute, tmp_path: Path, protocol: str
) -> None:
    """Cancelling a running upload sends DELETE to its resource."""
    src, _ = write_source(tmp_path, 4 * MIB)
    route.throttle = MIB
    with open_bg() as bg:
        task = bg.upload(server.url("/files"), src, protocol=protocol)
        wait_until(lambda: route.received() > 0, BOUND, "the first bytes at the server")
        route.throttle = None
        task.cancel()
        task.wait(30)
        assert task.state is TransferState.CANCELLED
    wait_until(lambda: route.upload().terminated, BOUND, "DELETE of the upload resource")
    assert methods(server)[-1] == "DELETE"


def test_journal_keeps_resource_and_identity_not_credentials(
    server: MockServer, route: ResumableUploadRoute, tmp_path: Path
) -> None:
    """The journal row holds the upload resource, the source identity and the confirmed offset; no secret."""
    src, data = write_source(tmp_path, 256 * 1024)
    with open_bg() as bg:
        task = bg.upload(
            server.url("/files"), src, protocol="tus", headers={"Authorization": "Bearer s3cret", "X-Key": "k3y"}
        ).wait(30)
        assert task.state is TransferState.COMPLETED
        journal = bg.journal_path
    info = os.stat(src)
    with contextlib.closing(sqlite3.connect(journal)) as db, db:
        row = db.execute("SELECT protocol, upload_url, source_identity, bytes_done, headers FROM tasks").fetchone()
    assert row[:4] == (
        "tus", server.url("/uploads/1"), f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}", len(data)
    )
    assert "s3cret" not in Path(journal).read_bytes().decode("latin-1") and "k3y" not in row[4]
    assert all(request.header("Authorization") == "Bearer s3cret" for request in server.requests)


def test_bad_protocol_is_refused(tmp_path: Path) -> None:
    """protocol= outside auto/tus/ietf/none is a ConfigError naming the accepted values."""
    src, _ = write_source(tmp_path, 10)
    with open_bg() as bg, pytest.raises(ConfigError, match="protocol='ftp' is invalid.*'tus'"):
        bg.upload("http://127.0.0.1:1/files", src, protocol="ftp")


def test_old_journal_is_upgraded(tmp_path: Path) -> None:
    """A schema-1 journal gains the upload columns when opened, and its tasks keep their fields."""
    state = Path(os.environ["SESSION_PRESETS_STATE_DIR"])
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state / "old.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executescript(
            "CREATE TABLE tasks (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, url TEXT NOT NULL, "
            "path TEXT NOT NULL, method TEXT NOT NULL, headers TEXT NOT NULL, sha256 TEXT, state TEXT NOT NULL, "
            "bytes_done INTEGER NOT NULL DEFAULT 0, bytes_total INTEGER, etag TEXT, last_modified TEXT, error TEXT, "
            "resumable INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, updated_at REAL NOT NULL);"
            "INSERT INTO tasks (kind, url, path, method, headers, state, created_at, updated_at) VALUES "
            "('upload', 'http://127.0.0.1:1/x', '/nonexistent', 'PUT', '{}', 'completed', 1.0, 1.0);"
            "PRAGMA user_version=1;"
        )
    os.chmod(path, 0o600)
    with open_bg("old") as bg:
        (task,) = bg.tasks()
        assert task.state is TransferState.COMPLETED and task.protocol == "none" and task.upload_url is None
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2



def test_patch_metrics_count_the_body(
    server: MockServer, route: ResumableUploadRoute, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PATCH of a resumed upload has metrics like any request: bytes_sent covers the part it sent."""
    from session_presets.background._sender import TaskSender

    src, data = write_source(tmp_path, 2 * MIB)
    route.drop_after = MIB
    seen: list[Any] = []
    send = TaskSender.send

    def recording(self: TaskSender, *args: Any, **kwargs: Any) -> Any:
        response = send(self, *args, **kwargs)
        seen.append(response)
        return response

    monkeypatch.setattr(TaskSender, "send", recording)
    with open_bg() as bg:
        assert bg.upload(server.url("/files"), src, protocol="tus").wait(30).state is TransferState.COMPLETED
    (patch,) = [response for response in seen if response.request.method == "PATCH"]
    assert patch.request.headers["Upload-Offset"] == str(MIB)
    assert len(data) - MIB < patch.metrics.bytes_sent < len(data) - MIB + 4096


def test_auto_discovery_is_retried_on_503(server: MockServer, route: ResumableUploadRoute, tmp_path: Path) -> None:
    """A 503 to the discovery OPTIONS is retried, not taken as "no resumable protocol"."""
    src, data = write_source(tmp_path, 64 * 1024)
    server.route("/files", MockResponse(503, headers={"Retry-After": "0"}), method="OPTIONS", times=1)
    with open_bg() as bg:
        task = bg.upload(server.url("/files"), src).wait(30)
        assert task.state is TransferState.COMPLETED and task.protocol == "tus"
    assert methods(server) == ["OPTIONS", "OPTIONS", "POST", "PATCH"]
    assert bytes(route.upload().data) == data


# -- servers that break the protocol ------------------------------------------------------


def _tus_server(server: MockServer, *, head: dict[str, str], patch: MockResponse | None = None) -> None:
    """A tus server at /files whose PATCH drops at 1 MiB, then answers HEAD with ``head``."""
    route = ResumableUploadRoute(protocols=["tus"])
    route.install(server, "/files")
    route.drop_after = MIB
    server.route("/uploads/1", MockResponse(200, headers={"Tus-Resumable": "1.0.0", **head}), method="HEAD")
    if patch is not None:
        server.route("/uploads/1", patch, method="PATCH")


@pytest.mark.parametrize(
    ("head", "message"),
    [
        ({}, "without a valid Upload-Offset"),
        ({"Upload-Offset": "1048576", "Upload-Length": "5"}, "has length 5"),
    ],
)
def test_unusable_head_fails_the_task(server: MockServer, tmp_path: Path, head: dict[str, str], message: str) -> None:
    """A HEAD without a usable Upload-Offset, or naming another length, fails the task with what was wrong."""
    src, _ = write_source(tmp_path, 2 * MIB)
    _tus_server(server, head=head)
    with open_bg() as bg:
        task = bg.upload(server.url("/files"), src, protocol="tus").wait(30)
        assert task.state is TransferState.FAILED
        assert message in str(task.error)
    assert methods(server) == ["POST", "PATCH", "HEAD"]


def test_offset_going_back_fails_the_task(server: MockServer, tmp_path: Path) -> None:
    """An offset lower than one the server confirmed before fails the task: the resource is not trusted."""
    src, _ = write_source(tmp_path, 2 * MIB)
    route = ResumableUploadRoute(protocols=["tus"])
    route.install(server, "/files")
    # Every PATCH gets 409; the first HEAD confirms 1 MiB, the second goes back to 512 KiB.
    heads = iter(["1048576", "524288"])

    def head(exchange: Any) -> MockResponse:
        return MockResponse(200, headers={"Tus-Resumable": "1.0.0", "Upload-Offset": next(heads)})

    server.route("/uploads/1", head, method="HEAD")
    server.route("/uploads/1", MockResponse(409, headers={"Tus-Resumable": "1.0.0"}), method="PATCH")
    with open_bg() as bg:
        task = bg.upload(server.url("/files"), src, protocol="tus")
        task.wait(30)
        assert task.state is TransferState.FAILED
    assert "went back from 1048576" in str(task.error) and "to 524288" in str(task.error)
    assert methods(server) == ["POST", "PATCH", "HEAD", "PATCH", "HEAD"]


def test_tus_patch_without_offset_fails(server: MockServer, tmp_path: Path) -> None:
    """A tus server answering PATCH 204 without Upload-Offset fails the task, naming the missing field."""
    src, _ = write_source(tmp_path, 64 * 1024)
    server.route("/files", MockResponse(201, headers={"Location": "/uploads/1"}), method="POST")
    server.route("/uploads/1", MockResponse(204), method="PATCH")
    with open_bg() as bg:
        task = bg.upload(server.url("/files"), src, protocol="tus").wait(30)
        assert task.state is TransferState.FAILED
        assert "without Upload-Offset" in str(task.error)


def test_creation_without_location_fails(server: MockServer, tmp_path: Path) -> None:
    """A creation answered 201 without Location fails the task: there is nothing to append to."""
    src, _ = write_source(tmp_path, 1024)
    server.route("/files", MockResponse(201), method="POST")
    with open_bg() as bg:
        task = bg.upload(server.url("/files"), src, protocol="ietf").wait(30)
        assert task.state is TransferState.FAILED
        assert "without a Location" in str(task.error)


def test_lost_during_append_is_retried(server: MockServer, route: ResumableUploadRoute, tmp_path: Path) -> None:
    """A 404 to PATCH is an attempt failure; the next attempt's HEAD finds the loss and starts over."""
    src, data = write_source(tmp_path, 256 * 1024)
    server.route("/uploads/1", MockResponse(404), method="PATCH", times=1)
    with open_bg() as bg:
        task = bg.upload(server.url("/files"), src, protocol="tus").wait(30)
        assert task.state is TransferState.COMPLETED, task.error
    assert methods(server) == ["POST", "PATCH", "HEAD", "PATCH"]
    assert bytes(route.upload().data) == data


def test_empty_file_uploads(server: MockServer, route: ResumableUploadRoute, tmp_path: Path) -> None:
    """An empty file is one creation request (tus: length 0; draft: Upload-Complete ?1), and completes."""
    src = tmp_path / "empty.bin"
    src.write_bytes(b"")
    with open_bg() as bg:
        assert bg.upload(server.url("/files"), src, protocol="tus").wait(30).state is TransferState.COMPLETED
        assert bg.upload(server.url("/files"), src, protocol="ietf").wait(30).state is TransferState.COMPLETED
    assert methods(server) == ["POST", "POST"]
    assert route.upload(1).complete and route.upload(2).complete


def test_ietf_complete_after_lost_final_response(server: MockServer, tmp_path: Path) -> None:
    """When HEAD says the draft upload is complete at full length (the final answer was lost), the task completes."""
    src, data = write_source(tmp_path, 128 * 1024)
    route = ResumableUploadRoute(protocols=["ietf"])
    route.install(server, "/files")
    # The whole body arrives and completes the upload, then the connection is reset before the answer.
    def receive_all_then_reset(exchange: Any, upload: Any) -> bool:
        kept = ResumableUploadRoute._receive(route, exchange, upload)
        if exchange.command == "PATCH":
            upload.complete = True
            exchange.reset()
            return False
        return kept

    route._receive = receive_all_then_reset  # type: ignore[method-assign]
    with open_bg() as bg:
        task = bg.upload(server.url("/files"), src, protocol="ietf").wait(30)
        assert task.state is TransferState.COMPLETED, task.error
    assert methods(server) == ["POST", "PATCH", "HEAD"]
    assert bytes(route.upload().data) == data


# -- the route itself ---------------------------------------------------------------------


def test_route_refuses_bad_arguments() -> None:
    """Unknown protocols and a prefix not framed by slashes are ValueErrors naming the argument."""
    with pytest.raises(ValueError, match="protocols="):
        ResumableUploadRoute(protocols=["ftp"])
    with pytest.raises(ValueError, match="prefix="):
        ResumableUploadRoute(prefix="uploads")
    with pytest.raises(LookupError):
        ResumableUploadRoute().upload()


def test_route_speaks_the_protocols_to_a_plain_client(server: MockServer, route: ResumableUploadRoute) -> None:
    """OPTIONS announces both protocols; wrong media types, missing Tus-Resumable and unknown resources are refused."""
    import requests

    options = requests.options(server.url("/files"), timeout=10)
    assert options.headers["Tus-Version"] == "1.0.0" and "termination" in options.headers["Tus-Extension"]
    assert options.headers["Accept-Patch"] == "application/partial-upload"
    assert requests.post(server.url("/files"), headers={"Tus-Resumable": "0.2.2"}, timeout=10).status_code == 412
    assert requests.post(server.url("/files"), headers={"Tus-Resumable": "1.0.0"}, timeout=10).status_code == 400
    created = requests.post(server.url("/files"), headers={"Tus-Resumable": "1.0.0", "Upload-Length": "3"}, timeout=10)
    resource = server.url(created.headers["Location"])
    tus = {"Tus-Resumable": "1.0.0", "Upload-Offset": "0"}
    wrong_type = requests.patch(resource, data=b"abc", headers={**tus, "Content-Type": "text/plain"}, timeout=10)
    assert wrong_type.status_code == 415
    no_version = {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    assert requests.patch(resource, data=b"abc", headers=no_version, timeout=10).status_code == 412
    assert requests.get(resource, timeout=10).status_code == 405
    assert requests.head(server.url("/uploads/9"), timeout=10).status_code == 404
    assert requests.put(server.url("/files"), data=b"plain", timeout=10).status_code == 201
    assert route.upload().protocol == "none" and bytes(route.upload().data) == b"plain"
    assert requests.delete(server.url("/files"), timeout=10).status_code == 405
    draft = requests.post(
        server.url("/files"), data=b"whole", headers={"Upload-Complete": "?1"}, timeout=10
    )
    assert draft.status_code == 200 and route.upload().complete and route.upload().length == 5


def test_route_without_termination(server: MockServer, tmp_path: Path) -> None:
    """A tus route with termination=False does not announce it and answers DELETE 405."""
    import requests

    route = ResumableUploadRoute(protocols=["tus"], termination=False)
    route.install(server, "/files")
    assert requests.options(server.url("/files"), timeout=10).headers["Tus-Extension"] == "creation"
    created = requests.post(server.url("/files"), headers={"Tus-Resumable": "1.0.0", "Upload-Length": "3"}, timeout=10)
    deleted = requests.delete(server.url(created.headers["Location"]), headers={"Tus-Resumable": "1.0.0"}, timeout=10)
    assert deleted.status_code == 405 and not route.upload().terminated


def test_resource_on_another_origin_gets_no_credentials(tmp_path: Path) -> None:
    """An upload resource on another origin (a storage host) gets no Authorization, header or session auth."""
    import requests

    src, data = write_source(tmp_path, 128 * 1024)
    with MockServer() as api, MockServer() as storage:
        route = ResumableUploadRoute(protocols=["tus"])
        route.install(storage, "/files")
        created = requests.post(
            storage.url("/files"), headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(len(data))}, timeout=10
        )
        location = storage.url(created.headers["Location"])
        api.route("/files", MockResponse(201, headers={"Location": location, "Tus-Resumable": "1.0.0"}))
        with background_session("xo", auth=("user", "pass"), **FAST) as bg:
            task = bg.upload(api.url("/files"), src, protocol="tus", headers={"Cookie": "c=1", "X-Trace": "t"})
            assert task.wait(30).state is TransferState.COMPLETED, task.error
        (creation,) = api.requests
        assert creation.header("Authorization") is not None and creation.header("Cookie") == "c=1"
        (_, patch) = storage.requests
        assert patch.method == "PATCH" and patch.header("X-Trace") == "t"
        assert patch.header("Authorization") is None and patch.header("Cookie") is None
        assert bytes(route.upload().data) == data


def test_https_creation_naming_an_http_resource_is_refused(tmp_path: Path) -> None:
    """A server reached over https that names an http:// upload resource fails the task; nothing is sent there."""
    src, _ = write_source(tmp_path, 1024)
    with MockServer(tls=True) as api, MockServer() as plain:
        api.route("/files", MockResponse(201, headers={"Location": plain.url("/uploads/1")}))
        with background_session("down", **{**FAST, **api.preset_overrides}) as bg:
            task = bg.upload(api.url("/files"), src, protocol="ietf").wait(30)
            assert task.state is TransferState.FAILED
            assert "not https" in str(task.error)
        assert plain.requests == []
