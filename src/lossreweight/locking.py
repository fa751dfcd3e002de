"""One writer per directory: an OS-level lock that dies with its process.

`fcntl.flock` on `DIR/.lock` is released by the kernel when the holder exits, however it
exits (kill -9 included), so a stale lock file never blocks: the file may stay, the lock does
not. The file holds who took it (pid, host, command) so the second writer can name the holder.
A writer may wait for the holder instead of failing (`wait=`, `lock_wait_seconds()`). The lock
file is never opened through a link (`O_NOFOLLOW`, one hard link, a regular file).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from lossreweight.errors import UserError
from lossreweight.safe_files import UnsafePath, read_no_follow

LOCK_FILE = ".lock"


class DirectoryLocked(UserError):
    """Another live process writes to this directory."""


class DirectoryLock:
    """Hold an exclusive lock on `directory` (created if missing) while in the `with` block.

    With `wait=0` (the default) another holder is an error at once: `DirectoryLocked` (exit 2,
    one line naming the holder). With `wait` > 0 seconds it waits for the holder, the way pip
    and HF datasets share a cache, calling `on_wait(holder)` once, and raises
    `DirectoryLocked` only after `wait` seconds. Re-entrant within one process is not
    supported: take it once, at the top.

    The lock file is opened with `O_NOFOLLOW` and must be a regular file with one link: a
    symlink or hard link planted as `.lock` is refused (`UnsafePath`), never truncated.
    """

    def __init__(
        self,
        directory: str | Path,
        what: str = "directory",
        *,
        wait: float = 0.0,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.what = what
        self.wait = wait
        self.on_wait = on_wait
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.directory / LOCK_FILE

    def acquire(self) -> DirectoryLock:
        deadline = time.monotonic() + max(self.wait, 0.0)
        told = False
        pause = 0.05
        while True:
            # In the loop: a holder whose set-up failed removes the folder it created.
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = describe_holder(self.path)
                if time.monotonic() >= deadline:
                    waited = f" after waiting {self.wait:g} s" if self.wait > 0 else ""
                    raise DirectoryLocked(
                        f"{self.what} {self.directory} is in use by {holder}{waited}; wait for "
                        "it to finish or stop it, or choose another directory"
                    ) from None
                if not told and self.on_wait is not None:
                    self.on_wait(holder)
                told = True
                time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
                pause = min(pause * 2, 1.0)
                continue
            if _same_file(fd, self.path):
                break
            # We locked a lock file that its last holder removed (a failed set-up): retry.
            os.close(fd)
        holder_note = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.time(),
            "command": " ".join(sys.argv)[:300],
        }
        with contextlib.suppress(OSError):  # the lock holds even if the note cannot be written
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder_note).encode(), 0)
        self._fd = fd
        return self

    def _open(self) -> int:
        """The lock file, never through a link: O_NOFOLLOW refuses a symlink, and a hard link
        (two names for one file) or anything but a regular file is refused before the write."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePath(
                    f"{self.path} is a symbolic link; lossreweight never writes through a link: "
                    "remove it and re-run"
                ) from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            kind = "not a regular file" if not stat.S_ISREG(st.st_mode) else "a hard link"
            raise UnsafePath(
                f"{self.path} is {kind} (another name for a file elsewhere); lossreweight never "
                "writes through a link: remove it and re-run"
            )
        return fd

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


def _same_file(fd: int, path: Path) -> bool:
    """Is the locked file still the one named `path` (not one unlinked meanwhile)?"""
    try:
        return os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
    except OSError:
        return False


def lock_wait_seconds(default: float = 86400.0) -> float:
    """How long a command waits for another process's lock: $LOSSREWEIGHT_LOCK_TIMEOUT
    seconds (0: do not wait), default one day."""
    text = os.environ.get("LOSSREWEIGHT_LOCK_TIMEOUT", "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise UserError(
            f"LOSSREWEIGHT_LOCK_TIMEOUT={text!r} must be a number of seconds >= 0 (0: do not wait)"
        )
    return value


def describe_holder(lock_file: Path) -> str:
    """'pid 123 on host (lossreweight train ...)', or 'another process' when unreadable."""
    try:
        info = json.loads(read_no_follow(lock_file, 4096) or b"{}")
        return f"pid {info['pid']} on {info['host']} ({info.get('command', '?')})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
