"""``get -o``: no writing through links, no half files, the path checked before sending (issue 22 §4)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from session_presets.cli import main
from session_presets.testing import Fault, MockServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX symbolic links and modes")

BODY = b"the body the server sent\n"
VICTIM = b"precious bytes of another file\n"


@pytest.fixture
def server() -> MockServer:
    """A MockServer that answers every GET /f with BODY."""
    with MockServer() as mock:
        mock.route("/f", lambda exchange: exchange.reply(200, BODY))
        yield mock


def _leftovers(directory: Path, *keep: str) -> list[str]:
    """Names in ``directory`` other than ``keep``: temporary files a run left behind."""
    return sorted(name for name in os.listdir(directory) if name not in keep)


def test_get_output_replaces_a_link_instead_of_writing_through_it(server: MockServer, tmp_path: Path) -> None:
    """-o LINK replaces the link with the body; the file it pointed at is untouched."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM)
    link = tmp_path / "out"
    link.symlink_to(victim)
    assert main(["get", server.url("/f"), "-o", str(link)]) == 0
    assert server.request_count == 1
    assert not link.is_symlink()
    assert link.read_bytes() == BODY
    assert victim.read_bytes() == VICTIM
    assert _leftovers(tmp_path, "victim.txt", "out") == []


def test_get_output_to_a_dangling_link_never_creates_its_target(server: MockServer, tmp_path: Path) -> None:
    """-o DANGLING_LINK replaces the link; the path it named is never created."""
    target = tmp_path / "elsewhere" / "planted"
    target.parent.mkdir()
    link = tmp_path / "out"
    link.symlink_to(target)
    assert main(["get", server.url("/f"), "-o", str(link)]) == 0
    assert not target.exists()
    assert not link.is_symlink() and link.read_bytes() == BODY


def test_get_output_failure_leaves_the_old_file_and_no_half_file(tmp_path: Path) -> None:
    """A body cut short exits 3; the file -o names keeps its old bytes and no temporary file stays."""
    out = tmp_path / "out"
    out.write_bytes(VICTIM)
    with MockServer() as server:
        server.enqueue(body=BODY, fault=Fault.CLOSE_AFTER_HEADERS)
        assert main(["get", server.url("/f"), "-o", str(out), "--retries", "0"]) == 3
        assert server.request_count == 1
    assert out.read_bytes() == VICTIM
    assert _leftovers(tmp_path, "out") == []


def test_get_output_in_a_missing_directory_sends_nothing(
    server: MockServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-o MISSING_DIR/x exits 2 naming the file, before any request is sent."""
    assert main(["get", server.url("/f"), "-o", str(tmp_path / "missing" / "x")]) == 2
    assert "missing/x" in capsys.readouterr().err
    assert server.request_count == 0
    assert server.accepted == 0


def test_get_output_to_a_directory_sends_nothing(server: MockServer, tmp_path: Path) -> None:
    """-o DIR exits 2 before any request is sent."""
    assert main(["get", server.url("/f"), "-o", str(tmp_path)]) == 2
    assert server.request_count == 0


def test_get_output_to_a_device_writes_in_place(server: MockServer) -> None:
    """-o /dev/null writes into the device: it is not replaced by a file."""
    assert main(["get", server.url("/f"), "-o", os.devnull]) == 0
    assert server.request_count == 1
    assert Path(os.devnull).is_char_device()


def test_get_output_file_gets_the_usual_mode(server: MockServer, tmp_path: Path) -> None:
    """The file -o makes has the mode open() would give it (0666 less the umask), not a temp file's 0600."""
    umask = os.umask(0o022)
    try:
        assert main(["get", server.url("/f"), "-o", str(tmp_path / "out")]) == 0
    finally:
        os.umask(umask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o644
