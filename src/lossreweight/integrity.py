"""Checkpoints that prove their integrity: a manifest of every file's sha256, and whether the
weights were finite when saved.

`checkpoints/step_N/manifest.json` is written after every other file of the checkpoint and
before `COMPLETE`:

    {"format": 1, "step": N, "finite": true,
     "files": {"model.safetensors": {"bytes": 123, "sha256": "..."}, ...}}

Loading checks every listed file against it, so one flipped bit or one edited number is a
one-line CheckpointError naming the file, never a silent resume on another run. A checkpoint
is *good* (a place to go back to) only if it is complete, its manifest reads, and its weights
were finite. Pure: no torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from lossreweight.errors import CheckpointError
from lossreweight.rundir import MANIFEST_FILE, complete_checkpoints, read_json_object
from lossreweight.safe_files import open_new

MANIFEST_FORMAT = 1
_CHUNK = 1 << 24
_PARALLEL = 1 << 16  # chunks at least this big are hashed while they are written
_HASHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lossreweight-hash")


class HashingWriter:
    """A binary file that hashes what it writes: the checkpoint's hash costs no second read.
    Write errors (a full disk) surface as OSError from `write`, also through torch.save."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # A new file, never one reached through a link planted at its name (O_EXCL|O_NOFOLLOW).
        self._file: BinaryIO = open(self.path, "wb", opener=_new_file)  # noqa: SIM115
        self._hash = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes | memoryview) -> int:
        # A large chunk is hashed on a helper thread while this one writes it (both release
        # the GIL); the call returns only when both are done, so `data` is never used later.
        pending = (
            _HASHER.submit(self._hash.update, data)
            if memoryview(data).nbytes >= _PARALLEL
            else None
        )
        try:
            n = self._file.write(data)
        except OSError as exc:
            raise self._named(exc) from None
        finally:
            if pending is not None:
                pending.result()
        if pending is None:
            self._hash.update(data)
        self.bytes += memoryview(data).nbytes
        return n

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> dict[str, Any]:
        """Flush, fsync and close; the file's manifest entry."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:  # a full disk often shows only when buffers are flushed
            self.abort()
            raise self._named(exc) from None
        self._file.close()
        return {"bytes": self.bytes, "sha256": self._hash.hexdigest()}

    def abort(self) -> None:
        with contextlib.suppress(OSError):  # closing flushes, and the disk may still be full
            self._file.close()

    def _named(self, exc: OSError) -> OSError:
        """The same error, naming the file (the one-line message says which write failed)."""
        return (
            OSError(exc.errno, exc.strerror or str(exc), str(self.path))
            if exc.filename is None
            else exc
        )

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.abort()


def _new_file(path: str, flags: int) -> int:
    return open_new(path)


def file_entry(path: str | Path) -> dict[str, Any]:
    """{"bytes", "sha256"} of a file on disk (read in 16 MiB chunks)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": h.hexdigest()}


def _entries(paths: Iterable[Path]) -> list[dict[str, Any]]:
    paths = list(paths)
    # hashlib releases the GIL on large buffers: the files of a checkpoint hash in parallel.
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(paths)))) as pool:
        return list(pool.map(file_entry, paths))


def write_manifest(
    ckpt: Path, step: int, finite: bool, known: dict[str, dict[str, Any]] | None = None
) -> None:
    """Write `ckpt/manifest.json` for every file in `ckpt` (hashing those not in `known`)."""
    known = dict(known or {})
    rest = sorted(
        p for p in ckpt.iterdir() if p.is_file() and p.name not in known and p.name != MANIFEST_FILE
    )
    known.update(zip((p.name for p in rest), _entries(rest), strict=True))
    manifest = {
        "format": MANIFEST_FORMAT,
        "step": step,
        "finite": bool(finite),
        "files": dict(sorted(known.items())),
    }
    (ckpt / MANIFEST_FILE).unlink(missing_ok=True)  # replaced, never written through
    with HashingWriter(ckpt / MANIFEST_FILE) as f:
        f.write(json.dumps(manifest, indent=1).encode())
        f.close()


def read_manifest(ckpt: Path) -> dict[str, Any]:
    """The checkpoint's manifest, checked for shape (CheckpointError if missing or damaged)."""
    file = ckpt / MANIFEST_FILE
    if not file.is_file():
        raise CheckpointError(
            f"{ckpt} has no {MANIFEST_FILE} (file hashes): it was written by an older lossreweight "
            f"or damaged; {damaged_advice(ckpt)}"
        )
    manifest = read_json_object(
        file, what="a checkpoint manifest", fix=damaged_advice(ckpt), error=CheckpointError
    )
    files = manifest.get("files")
    ok = (
        manifest.get("format") == MANIFEST_FORMAT
        and isinstance(manifest.get("finite"), bool)
        and isinstance(files, dict)
        and all(isinstance(e, dict) and isinstance(e.get("sha256"), str) for e in files.values())
    )
    if not ok:
        raise CheckpointError(f"{file} is not a valid checkpoint manifest; {damaged_advice(ckpt)}")
    return manifest


def verify_checkpoint(ckpt: Path, only: Iterable[str] | None = None) -> dict[str, Any]:
    """Check the files of `ckpt` (or just `only`) against its manifest; the manifest.
    A missing, resized or changed file is a CheckpointError naming it."""
    manifest = read_manifest(ckpt)
    files: dict[str, dict[str, Any]] = manifest["files"]
    names = sorted(files) if only is None else list(only)
    for name in names:
        if name not in files:
            raise CheckpointError(
                f"{MANIFEST_FILE} of {ckpt} does not list {name}; {damaged_advice(ckpt)}"
            )
        path = ckpt / name
        if not path.is_file() or path.stat().st_size != files[name].get("bytes"):
            what = "is missing" if not path.is_file() else "has another size than when it was saved"
            raise CheckpointError(f"{path} {what}; {damaged_advice(ckpt)}")
    for name, entry in zip(names, _entries(ckpt / n for n in names), strict=True):
        if entry["sha256"] != files[name]["sha256"]:
            raise CheckpointError(
                f"{ckpt / name} changed since it was saved "
                f"(its sha256 does not match {MANIFEST_FILE}); "
                f"{damaged_advice(ckpt)}"
            )
    return manifest


def is_good(ckpt: Path) -> bool:
    """Complete, with a readable manifest that says its weights were finite (no hashing:
    `verify_checkpoint` does that when the checkpoint is loaded)."""
    try:
        return bool(read_manifest(ckpt)["finite"])
    except CheckpointError:
        return False


def last_good_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint whose weights were finite, or None."""
    return next((c for c in reversed(complete_checkpoints(run_dir)) if is_good(c)), None)


def damaged_advice(ckpt: Path) -> str:
    """What to do about a damaged checkpoint: delete it, and what a resume then uses."""
    older = [c for c in complete_checkpoints(ckpt.parent.parent) if c.name < ckpt.name]
    good = next((c for c in reversed(older) if is_good(c)), None)
    then = (
        f"a re-run then resumes from {older[-1]}" if older else "a re-run then starts from scratch"
    )
    if older and good != older[-1]:
        then += f" (the last good checkpoint is {good or 'none'})"
    return f"the checkpoint is damaged or was tampered with: delete {ckpt} ({then})"


def describe_last_good(run_dir: str | Path) -> str:
    """The divergence message's 'last good checkpoint': the newest with finite weights, and
    which newer ones to delete so that a re-run resumes from it."""
    done = complete_checkpoints(run_dir)
    if not done:
        return "none (no checkpoint was saved)"
    good = last_good_checkpoint(run_dir)
    newer = [c.name for c in done if good is None or c.name > good.name]
    text = str(good) if good else "none (no checkpoint with finite weights)"
    if newer:
        text += f" (delete the newer {', '.join(newer)} first: their weights are not finite)"
    return text


def nonfinite_message(ckpt: Path) -> str:
    """The error for resuming from a checkpoint whose weights are not finite: which
    checkpoints to delete so that a re-run resumes from the last good one."""
    run_dir = ckpt.parent.parent
    good = last_good_checkpoint(run_dir)
    bad = [c.name for c in complete_checkpoints(run_dir) if good is None or c.name > good.name]
    then = (
        f"a re-run then resumes from the last good checkpoint {good}"
        if good
        else "a re-run then starts from scratch"
    )
    return (
        f"{ckpt} holds non-finite weights (NaN/inf), so training cannot resume from it; delete "
        f"{', '.join(bad)} in {ckpt.parent} ({then}), "
        "after lowering train.lr or raising train.grad_clip"
    )
