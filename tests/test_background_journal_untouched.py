"""A journal refused as invalid is left byte for byte as it was: validated read-only first (issue 22 §5)."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from session_presets import TransferError, background_session
from session_presets.background.journal import _SCHEMA, SCHEMA_VERSION

pytestmark = pytest.mark.timeout(60)

#: A child that makes a change and dies before any checkpoint: the change stays pending in the -wal.
PENDING_WAL = textwrap.dedent(
    """
    import os, sqlite3, sys
    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute(sys.argv[2])
    os._exit(0)
    """
)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _journal(tmp_path: Path, identifier: str) -> Path:
    """Make a good journal for ``identifier`` (by opening and closing its session); return its path."""
    state = tmp_path / "state"
    with background_session(identifier, state_dir=str(state)):
        pass
    path = state / f"{identifier}.sqlite3"
    assert path.exists()
    return path


def _pend(path: Path, statement: str) -> None:
    """Leave ``statement`` pending in the journal's -wal, as a process killed before a checkpoint would."""
    subprocess.run([sys.executable, "-c", PENDING_WAL, str(path), statement], check=True, timeout=30)
    assert Path(f"{path}-wal").stat().st_size > 0


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("PRAGMA user_version=99", "schema version 99"),
        (
            "INSERT INTO tasks (kind, url, path, method, headers, state, created_at, updated_at) "
            "VALUES ('download', 'http://h/f', '/tmp/f', 'GET', '{}', 'bogus', 0, 0)",
            "malformed",
        ),
    ],
    ids=["newer-version", "malformed-row"],
)
def test_refused_journal_with_a_pending_wal_change_is_left_untouched(
    tmp_path: Path, statement: str, refusal: str
) -> None:
    """A change pending in the -wal that makes the journal invalid: refused, file and -wal unchanged."""
    path = _journal(tmp_path, "pending")
    _pend(path, statement)
    wal = Path(f"{path}-wal")
    before = (_digest(path), _digest(wal))
    with pytest.raises(TransferError) as info:
        background_session("pending", state_dir=str(path.parent))
    assert refusal in str(info.value)
    assert "left untouched" in str(info.value)
    assert wal.exists(), "the -wal was checkpointed and deleted"
    assert (_digest(path), _digest(wal)) == before


def test_refused_rollback_journal_is_not_switched_to_wal(tmp_path: Path) -> None:
    """A rollback-mode journal with a malformed row: refused, its bytes (header 18-19 included) unchanged."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    path = state / "rollback.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=DELETE")
    db.executescript(_SCHEMA)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    db.execute(
        "INSERT INTO tasks (kind, url, path, method, headers, state, created_at, updated_at) "
        "VALUES ('upload', 'http://h/f', '/tmp/f', 'PUT', 'not json', 'pending', ?, ?)",
        (time.time(), time.time()),
    )
    db.close()
    before = path.read_bytes()
    assert before[18:20] == b"\x01\x01"  # rollback journal: read and write versions 1
    with pytest.raises(TransferError, match="malformed.*left untouched"):
        background_session("rollback", state_dir=str(state))
    after = path.read_bytes()
    assert after[18:20] == b"\x01\x01", "the journal was switched to WAL"
    assert after == before
    assert sorted(p.name for p in state.iterdir() if p.name.startswith("rollback.sqlite3")) == ["rollback.sqlite3"]


def test_good_journal_still_opens_and_resumes_in_wal(tmp_path: Path) -> None:
    """A good journal (validated read-only first) opens read-write and is in WAL mode afterwards."""
    path = _journal(tmp_path, "good")
    with background_session("good", state_dir=str(path.parent)) as bg:
        assert bg.tasks() == []
        assert path.read_bytes()[18:20] == b"\x02\x02"  # WAL
