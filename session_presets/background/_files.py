"""The files a transfer writes: never opened through a link, errors that name the file, durable renames.

Also the positioned reads and writes of a ``.part`` (a seek and a read or
write where the platform has no ``pread``/``pwrite``), and the piece size of
every file read.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from typing import Final

from .._errors import DiskFullError, TransferError
from ._taskstate import TaskState

__all__ = [
    "CHUNK_SIZE",
    "OPEN_FLAGS",
    "O_DIRECT",
    "O_NOFOLLOW",
    "check_own_file",
    "check_still_ours",
    "file_error",
    "fsync_directory",
    "pread",
    "pwrite",
    "remove_file",
]

log = logging.getLogger(__name__)

#: Largest piece of a file read at once (hashing a .part, an upload).
CHUNK_SIZE: Final = 1 << 20

#: Flags of every file the library opens: never through a symbolic link.
O_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
OPEN_FLAGS: Final = os.O_RDWR | O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)

#: errno values that mean "no room to write": the task can resume once there is.
_DISK_FULL: Final = frozenset({errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)})

#: Whether positioned reads and writes exist (not on Windows).
_HAS_PWRITE: Final = hasattr(os, "pwrite") and hasattr(os, "pread")

#: ``O_DIRECT`` where the platform has it (Linux); 0 elsewhere, where every write is buffered.
O_DIRECT: Final = getattr(os, "O_DIRECT", 0)


def file_error(task: TaskState, path: str, exc: OSError) -> TransferError:
    """The TransferError for ``exc`` on ``path``: DiskFullError when out of space (resumable), else named."""
    if exc.errno in _DISK_FULL:
        return DiskFullError(
            f"disk full while writing {path!r} ({exc.strerror or exc}); the {task.bytes_done} bytes written "
            "so far are kept and the download resumes from there on the next run"
        )
    if exc.errno == errno.ELOOP:
        return TransferError(
            f"refusing to write {path!r}: it is a symbolic link, which this library never follows "
            "(someone with write access to the directory planted it). Nothing was written through it."
        )
    if exc.errno == errno.EEXIST:
        return TransferError(
            f"refusing to write {path!r}: it appeared while the task was starting, and this library did not "
            "create it (a planted file or link?). It was left untouched."
        )
    return TransferError(f"cannot write {path!r}: {exc}")


def fsync_directory(path: str) -> None:
    """Make a rename in ``path`` durable, where the platform allows it."""
    if os.name != "posix":  # pragma: no cover - Windows has no directory fsync
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - the directory we just renamed in is readable
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse directory fsync
        pass
    finally:
        os.close(fd)


def remove_file(path: str) -> None:
    """Unlink ``path`` (a planted link is removed, never followed); a missing file is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:  # pragma: no cover - we created the file in a directory we write to
        log.debug("cannot remove %r: %s", path, exc)


def check_own_file(fd: int, path: str) -> os.stat_result:
    """Return ``fstat(fd)`` if it is a regular file of ours, else raise TransferError naming ``path``."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise TransferError(f"refusing to use {path!r}: it is not a regular file")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise TransferError(
            f"refusing to use {path!r}: it is owned by another user (uid {info.st_uid}); it was left untouched"
        )
    return info


def pwrite(fd: int, data: memoryview, offset: int) -> int:
    """``os.pwrite``; on Windows, which has none, a seek and a write (one thread writes a .part)."""
    if _HAS_PWRITE:
        return os.pwrite(fd, data, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.write(fd, data)


def pread(fd: int, size: int, offset: int) -> bytes:
    """``os.pread``; on Windows, which has none, a seek and a read."""
    if _HAS_PWRITE:
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


def check_still_ours(fd: int, part: str) -> None:
    """Refuse to rename a .part that is no longer the file we wrote (replaced, or a planted link)."""
    mine = os.fstat(fd)
    try:
        there = os.lstat(part)
    except OSError as exc:
        raise TransferError(f"{part!r} disappeared before the final rename: {exc}") from exc
    if (there.st_dev, there.st_ino) != (mine.st_dev, mine.st_ino):
        kind = "a symbolic link" if stat.S_ISLNK(there.st_mode) else "another file"
        raise TransferError(
            f"refusing to finish: {part!r} was replaced by {kind} while downloading; "
            "nothing was written through it and the destination was not touched"
        )
