"""One writer per directory: an OS-level lock that dies with its process.

`fcntl.flock` on `DIR/.lock` is released by the kernel when the holder exits, however it
exits (kill -9 included), so a stale lock file never blocks: the file may stay, the lock does
not. The file holds who took it (pid, host, command) so the second writer can name the holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from lossreweight.errors import UserError

LOCK_FILE = ".lock"


class DirectoryLocked(UserError):
    """Another live process writes to this directory."""


class DirectoryLock:
    """Hold an exclusive lock on `directory` (created if missing) while in the `with` block.

    Raises `DirectoryLocked` (exit 2, one line naming the holder) when another process holds
    it. Re-entrant within one process is not supported: take it once, at the top.
    """

    def __init__(self, directory: str | Path, what: str = "directory") -> None:
        self.directory = Path(directory)
        self.what = what
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.directory / LOCK_FILE

    def acquire(self) -> DirectoryLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DirectoryLocked(
                f"{self.what} {self.directory} is in use by {describe_holder(self.path)}; wait for "
                "it to finish or stop it, or choose another directory"
            ) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.time(),
            "command": " ".join(sys.argv)[:300],
        }
        with contextlib.suppress(OSError):  # the lock holds even if the note cannot be written
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def describe_holder(lock_file: Path) -> str:
    """'pid 123 on host (lossreweight train ...)', or 'another process' when unreadable."""
    try:
        info = json.loads(lock_file.read_text() or "{}")
        return f"pid {info['pid']} on {info['host']} ({info.get('command', '?')})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
