"""Where background journals live, and the OS locks: one process per identifier, one writer per destination.

The locks are advisory locks held by the kernel (``flock`` on POSIX,
``msvcrt.locking`` on Windows): on ``<state_dir>/<identifier>.lock``, and on
``<dest>.part.lock`` while a task may write ``dest``. The kernel drops them when the
process dies, so a crash or ``kill -9`` never leaves anything stuck.

Every lock file is opened with ``O_NOFOLLOW``: a planted symbolic link is
refused with a TransferError, and its target is never touched. The state
directory is created with mode 0700 and refused, as ssh refuses such key
files, when another user owns it or group or others may write to it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import sys
from typing import Final

from .._errors import ConfigError, DestinationInUseError, IdentifierInUseError, TransferError

__all__ = [
    "DestinationInUseError",
    "DestinationLock",
    "IdentifierLock",
    "StateDirectoryError",
    "default_state_dir",
    "prepare_state_dir",
    "validate_identifier",
]

#: Flags of every lock file: never through a symbolic link.
_LOCK_FLAGS: Final = (
    os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)


#: Directory name under the platform's per-user state directory.
APP_DIR: Final = "session-presets"

#: Longest identifier accepted, so that ``<identifier>.sqlite3`` fits any file system.
MAX_IDENTIFIER_LENGTH: Final = 128

# Matched whole (fullmatch): "$" would also match before a trailing newline.
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: Names Windows reserves for devices, whatever the extension.
_RESERVED: Final = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(1, 10)} | {f"lpt{i}" for i in range(1, 10)}
)


class StateDirectoryError(TransferError):
    """The state directory cannot be created or is unsafe: a local configuration problem, not a transfer's."""


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
        or not _IDENTIFIER.fullmatch(identifier)
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


def prepare_state_dir(path: str) -> str:
    """Create the state directory ``path`` with mode 0700 if missing, and check that it is safe.

    Returns:
        ``path``.

    Raises:
        StateDirectoryError: it cannot be created, is not a directory, is owned by
            another user, or is writable by group or others.
    """
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StateDirectoryError(f"cannot create the state directory {path!r}: {exc}") from exc
    else:
        # mkdir honours the umask; the directory must be 0700 whatever it is.
        os.chmod(path, 0o700)
    try:
        info = os.stat(path)
    except OSError as exc:  # pragma: no cover - we just created or found it
        raise StateDirectoryError(f"cannot use the state directory {path!r}: {exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirectoryError(f"the state directory {path!r} is not a directory")
    if sys.platform == "win32":  # pragma: no cover - POSIX ownership and modes only
        return path
    if info.st_uid != os.getuid():
        raise StateDirectoryError(
            f"refusing the state directory {path!r}: it is owned by uid {info.st_uid}, not by this user "
            f"(uid {os.getuid()}). Another user could plant files there; use a state_dir of your own."
        )
    if info.st_mode & 0o022:
        raise StateDirectoryError(
            f"refusing the state directory {path!r}: its mode {stat.S_IMODE(info.st_mode):04o} lets group or "
            f"others write to it. Run: chmod 700 {path!r}"
        )
    return path


def _open_lock_file(path: str) -> int:
    """Open (or create, 0600) the lock file ``path`` without following links; check it is a file of ours."""
    try:
        fd = os.open(path, _LOCK_FLAGS, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TransferError(
                f"refusing the lock file {path!r}: it is a symbolic link, which this library never "
                "follows (someone with write access to the directory planted it). Its target was left untouched."
            ) from None
        raise TransferError(f"cannot open lock file {path!r}: {exc}") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
        os.close(fd)
        raise TransferError(f"refusing the lock file {path!r}: it is not a regular file of this user")
    return fd


#: What a destination lock file holds: its holder, as DestinationLock writes it.
_OWNER = re.compile(rb"^(pid \d+, background session '[^'\n]*', [^\n]*\n)?$")


def _check_lock_content(fd: int, path: str) -> None:
    """Refuse a file that is not one of our lock files: it is locked, rewritten and removed."""
    content = os.pread(fd, 4096, 0) if hasattr(os, "pread") else b""
    if not _OWNER.match(content):
        os.close(fd)
        raise TransferError(
            f"refusing to use {path!r} as a lock file: it holds something else. It was left untouched; "
            "move it away or download to another name."
        )


#: errno values of a lock another open file description holds.
_BUSY: Final = frozenset({errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK})


def _read_holder(fd: int) -> str:
    """What the holder wrote into the lock file ``fd`` (who it is), or "" when it cannot be read."""
    if not hasattr(os, "pread"):  # pragma: no cover - Windows: the locked byte cannot be read
        return ""
    try:
        return os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
    except OSError:  # pragma: no cover - a lock file we just opened is readable
        return ""


def _lock_or_holder(fd: int, path: str) -> str | None:
    """Lock ``fd``: None once it is ours; when another holds it, close ``fd`` and return what the holder wrote.

    Raises:
        TransferError: locking failed for another reason (``fd`` is closed).
    """
    try:
        _lock(fd)
    except OSError as exc:
        holder = _read_holder(fd)
        os.close(fd)
        if exc.errno not in _BUSY:  # pragma: no cover - flock fails only when the lock is held
            raise TransferError(f"cannot lock {path!r}: {exc}") from exc
        return holder
    return None


class _HeldLock:
    """What both lock classes share: saying who holds the lock, releasing it, forgetting it in a forked child."""

    #: Remove the lock file on release (while still locked), so no stale file stays behind.
    _remove_on_release: bool = False

    path: str
    _fd: int | None

    def _write_holder(self, text: str) -> None:
        """Replace the lock file's content with ``text``, for other callers' messages."""
        if self._fd is not None and sys.platform != "win32":
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{text}\n".encode(), 0)

    def release(self) -> None:
        """Drop the lock and close the file (removing the file first if the class says so); safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._remove_on_release:
            # Removed while still locked: a waiter that opened it sees it is gone and retries.
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def forget_after_fork(self) -> None:
        """In a forked child: close the inherited descriptor without unlocking the parent's lock."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class DestinationLock(_HeldLock):
    """One writer per destination: an exclusive OS lock on ``<dest>.part.lock``, removed on release.

    It works across sessions and processes alike (every open of the file is a
    lock of its own). The holder writes who it is into the file, so a second
    caller's error names the owner.

    Args:
        dest: the destination file.
        owner: who takes the lock, for the other callers' messages.

    Raises:
        DestinationInUseError: another task holds the lock.
        TransferError: the lock file is a symbolic link or cannot be opened.
    """

    _remove_on_release = True

    def __init__(self, dest: str, owner: str) -> None:
        self.dest = dest
        self.path = dest + ".part.lock"
        while True:
            fd = _open_lock_file(self.path)
            _check_lock_content(fd, self.path)
            holder = _lock_or_holder(fd, self.path)
            if holder is not None:
                raise DestinationInUseError(
                    f"dest={dest!r} is already being written by {holder or 'another task'}; one task at a "
                    f"time may write a file (lock {self.path!r}). Its bytes were left untouched."
                ) from None
            # The holder before us may have removed the file after we opened it: lock the one in place.
            try:
                there = os.lstat(self.path)
            except FileNotFoundError:
                there = None
            mine = os.fstat(fd)
            if there is not None and (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
                break
            os.close(fd)  # pragma: no cover - needs a release between our open and our lock
        self._fd: int | None = fd
        self.set_owner(owner)

    def set_owner(self, owner: str) -> None:
        """Write who holds the lock into the lock file, for other callers' messages."""
        self._write_holder(owner)


class IdentifierLock(_HeldLock):
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
        fd = _open_lock_file(path)
        holder = _lock_or_holder(fd, path)
        if holder is not None:
            who = f" (pid {holder})" if holder else ""
            raise IdentifierInUseError(
                f"background session identifier {identifier!r} is in use by another process{who}; "
                f"lock file {path!r}. Only one process per identifier may run at a time."
            )
        self._fd: int | None = fd
        self._write_holder(str(os.getpid()))

    @property
    def held(self) -> bool:
        """True until ``release()``."""
        return self._fd is not None


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
