"""Where background journals live, and the OS lock that keeps one process per identifier.

The lock is an advisory lock held by the kernel (``flock`` on POSIX,
``msvcrt.locking`` on Windows) on ``<state_dir>/<identifier>.lock``. The kernel
drops it when the process dies, so a crash or ``kill -9`` never leaves an
identifier stuck.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from typing import Final

from ..errors import ConfigError, IdentifierInUseError, TransferError

__all__ = ["IdentifierLock", "default_state_dir", "validate_identifier"]

#: Directory name under the platform's per-user state directory.
APP_DIR: Final = "session-presets"

#: Longest identifier accepted, so that ``<identifier>.sqlite3`` fits any file system.
MAX_IDENTIFIER_LENGTH: Final = 128

_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: Names Windows reserves for devices, whatever the extension.
_RESERVED: Final = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(1, 10)} | {f"lpt{i}" for i in range(1, 10)}
)


def validate_identifier(identifier: object) -> str:
    """Return ``identifier`` if it is safe as a file name on every platform.

    Raises:
        ConfigError: it is not a non-empty string of letters, digits, ``.``, ``_``
            and ``-`` starting with a letter or digit, or it is a reserved name.
    """
    accepted = (
        f"a non-empty name of at most {MAX_IDENTIFIER_LENGTH} letters, digits, '.', '_' and '-', "
        "starting with a letter or digit, such as 'nightly-sync'"
    )
    if (
        not isinstance(identifier, str)
        or len(identifier) > MAX_IDENTIFIER_LENGTH
        or not _IDENTIFIER.match(identifier)
        or identifier.endswith(".")
    ):
        raise ConfigError(f"identifier={identifier!r} is invalid: expected {accepted}")
    if identifier.split(".", 1)[0].lower() in _RESERVED:
        raise ConfigError(f"identifier={identifier!r} is invalid: it is a reserved device name on Windows")
    return identifier


def default_state_dir() -> str:
    """Return the platform's per-user state directory for session_presets.

    ``$XDG_STATE_HOME/session-presets`` (else ``~/.local/state/session-presets``)
    on Linux and other POSIX systems, ``~/Library/Application Support/session-presets``
    on macOS, and ``%LOCALAPPDATA%\\session-presets`` on Windows.
    """
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
    elif sys.platform == "darwin":
        base = os.path.join(home, "Library", "Application Support")
    else:
        xdg = os.environ.get("XDG_STATE_HOME", "")
        # The XDG spec says relative paths are invalid and must be ignored.
        base = xdg if os.path.isabs(xdg) else os.path.join(home, ".local", "state")
    return os.path.join(base, APP_DIR)


class IdentifierLock:
    """An exclusive, non-blocking OS lock on ``<state_dir>/<identifier>.lock``.

    Args:
        path: the lock file; created with mode 0600 if missing.
        identifier: the background session identifier, for messages.

    Raises:
        IdentifierInUseError: another live process holds the lock.
        TransferError: the lock file cannot be opened.
    """

    def __init__(self, path: str, identifier: str) -> None:
        self.path = path
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0)
        try:
            self._fd: int | None = os.open(path, flags, 0o600)
        except OSError as exc:
            raise TransferError(f"cannot open lock file {path!r}: {exc}") from exc
        try:
            _lock(self._fd)
        except OSError as exc:
            holder = self._holder()
            os.close(self._fd)
            self._fd = None
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise TransferError(f"cannot lock {path!r}: {exc}") from exc
            who = f" (pid {holder})" if holder else ""
            raise IdentifierInUseError(
                f"background session identifier {identifier!r} is in use by another process{who}; "
                f"lock file {path!r}. Only one process per identifier may run at a time."
            ) from None
        self._write_pid()

    def _holder(self) -> str:
        assert self._fd is not None
        try:
            return os.pread(self._fd, 32, 0).decode("ascii", "replace").strip() if hasattr(os, "pread") else ""
        except OSError:  # pragma: no cover - a lock file we just opened is readable
            return ""

    def _write_pid(self) -> None:
        assert self._fd is not None
        if sys.platform == "win32":  # pragma: no cover - the locked byte cannot be rewritten
            return
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    @property
    def held(self) -> bool:
        """True until ``release()``."""
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock and close the file; safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def forget_after_fork(self) -> None:
        """In a forked child: close the inherited descriptor without unlocking the parent's lock."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
