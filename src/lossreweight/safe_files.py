"""Writing only what is ours, and deleting only what we wrote.

The rule every command that replaces output follows (docs/reliability.md, "What a command may
delete"):

- A folder a command writes into holds a *manifest* of the files it wrote there
  (`write_manifest`, a JSON list of paths relative to the folder). Replacing the output removes
  exactly the files that the manifest lists (`remove_listed`), never anything else: a user's
  notes beside them stay. A folder without a readable manifest is not provably ours and is
  refused (the caller says what to do instead).
- No write goes through a link. New files are created with `O_CREAT | O_EXCL | O_NOFOLLOW`
  (`open_new`): a symlink or any file planted at that name makes the open fail instead of
  truncating the link's target. Finished files are moved into place with `os.replace`, which
  swaps the directory entry and never writes through a link at the destination. Folders on
  the way are checked with `lstat` (`real_dirs`): a link where a folder should be is refused.
- Temporary folders (`WorkDir`) are siblings of the output, created fresh (`mkdir` fails if
  the name exists), marked with `WORK_MARKER` and locked (`flock` on the folder) for as long as
  their process lives. A killed process leaves one behind; the next run removes it
  (`remove_stale_work_dirs`): only folders that carry the marker and whose lock is free.

No torch, no numpy: importable by every command.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from lossreweight.errors import UserError

WORK_MARKER = ".lossreweight-work"
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(UserError):
    """A link or foreign file where lossreweight would write or delete: refused."""


def open_new(path: str | Path, mode: int = 0o644) -> int:
    """A file descriptor of a *new* file at `path`, opened for writing. Fails (FileExistsError)
    if anything exists there, a symlink or a hard link included, so nothing is ever written
    through a planted link."""
    return os.open(path, _NEW_FLAGS, mode)


def write_new(path: str | Path, data: bytes, *, fsync: bool = True) -> None:
    """Write `data` into a new file at `path` (see `open_new`)."""
    fd = open_new(path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes) -> None:
    """Replace `path` with `data` atomically: a fresh temporary name beside it (`O_EXCL |
    O_NOFOLLOW`), fsync, `os.replace`. A link at `path` is replaced, its target untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    try:
        write_new(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- manifests: the files a command wrote into a folder ------------------------------------
def write_manifest(folder: str | Path, name: str, files: Iterable[str], **extra: object) -> None:
    """Record `files` (paths relative to `folder`) as written by us, in `folder/name`.
    `extra` keys go into the same JSON object (who wrote it, for what)."""
    body = {"files": sorted(set(files))} | extra
    atomic_write(Path(folder) / name, (json.dumps(body, indent=1) + "\n").encode())


def read_manifest(folder: str | Path, name: str) -> set[str] | None:
    """The files `folder/name` lists, or None when it is missing, a link, or unreadable (the
    folder is then not provably ours)."""
    try:
        body = json.loads(read_no_follow(Path(folder) / name, 64 << 20))
    except (OSError, ValueError):
        return None
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return {f for f in files if _is_relative(f)}


def read_no_follow(path: str | Path, limit: int) -> bytes:
    """Up to `limit` bytes of the file at `path`, never through a symlink (OSError if it is
    one, or missing)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read(limit)


def list_files(folder: str | Path) -> set[str]:
    """Every regular file under `folder` (relative paths); links are not followed."""
    root = Path(folder)
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for f in filenames:
            if stat.S_ISREG(os.lstat(base / f).st_mode):
                out.add((base / f).relative_to(root).as_posix())
        dirnames[:] = [d for d in dirnames if not (base / d).is_symlink()]
    return out


def foreign_entries(folder: str | Path, owned: set[str], ignore: Iterable[str] = ()) -> list[str]:
    """Entries under `folder` that are not in `owned` (nor parents of an owned file, nor in
    `ignore`): what a replacement must leave alone. Links count as foreign."""
    root = Path(folder)
    parents = {p.as_posix() for f in owned for p in Path(f).parents if p != Path(".")}
    skip = set(ignore)
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for name in sorted(filenames + dirnames):
            rel = (base / name).relative_to(root).as_posix()
            if rel in skip:
                continue
            if rel in parents and not (base / name).is_symlink():
                continue
            if rel not in owned or not stat.S_ISREG(os.lstat(base / name).st_mode):
                out.append(rel)
        dirnames[:] = [d for d in dirnames if (base / d).relative_to(root).as_posix() in parents]
    return sorted(set(out))


def real_dirs(folder: str | Path, rel: str) -> bool:
    """Are `folder` and every folder between it and `folder/rel` real folders (or missing),
    none of them a symlink? (A link there would redirect a write or a delete.)"""
    path = Path(folder)
    for part in Path(rel).parts[:-1]:
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return True
        if not stat.S_ISDIR(st.st_mode):
            return False
    return True


def remove_listed(folder: str | Path, files: Iterable[str]) -> None:
    """Delete the listed files under `folder`, then the folders they leave empty. Nothing is
    followed through a link: a listed path under a symlinked folder, or one that is now a
    folder, is left alone."""
    root = Path(folder)
    emptied: set[Path] = set()
    for rel in sorted(set(files)):
        if not _is_relative(rel) or not real_dirs(root, rel):
            continue
        path = root / rel
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                path.unlink()
                emptied.update(p for p in path.parents if p != root and root in p.parents)
    for d in sorted(emptied, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()  # only if empty: a user's file inside keeps it


def _is_relative(rel: str) -> bool:
    p = Path(rel)
    return bool(rel) and not p.is_absolute() and ".." not in p.parts


# -- temporary folders that a killed process leaves behind ----------------------------------
class WorkDir:
    """A new temporary folder `parent/prefix<pid>-<random>` that this process holds (flock) until
    `close()`; `remove_stale_work_dirs(parent, prefix)` removes the ones no live process holds."""

    def __init__(self, parent: str | Path, prefix: str) -> None:
        parent = Path(parent)
        self.path = parent / f"{prefix}{os.getpid()}-{os.urandom(4).hex()}"
        os.mkdir(self.path, 0o755)
        self._fd: int | None = None
        try:  # a signal (KeyboardInterrupt) in here must not leave the folder behind
            self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            write_new(self.path / WORK_MARKER, b"", fsync=False)
        except BaseException:
            self.close()
            raise

    def close(self, *, remove: bool = True) -> None:
        if remove:
            shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WorkDir:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def remove_stale_work_dirs(parent: str | Path, prefix: str, markers: Iterable[str] = ()) -> int:
    """Remove the folders `parent/prefix*` left by killed processes: real folders (not links)
    whose lock no live process holds and that carry `WORK_MARKER` (or one of `markers`), or
    are empty and a minute old (killed between mkdir and the marker). Returns how many went."""
    parent = Path(parent)
    names = (WORK_MARKER, *markers)
    removed = 0
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith(prefix)]
    except OSError:
        return 0
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    continue  # a live process is writing it
                raise
            inside = os.listdir(fd)
            # An empty one may be a live writer's, between its mkdir and its flock: only an
            # old one is a killed writer's.
            old_empty = not inside and time.time() - os.fstat(fd).st_mtime > 60
            if old_empty or any(n in inside for n in names):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
        finally:
            os.close(fd)
    return removed
