"""The files of RUN_DIR/eval/: written whole or not at all, never over an earlier result."""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

EVAL_DIR = "eval"
DOWNSTREAM_PREFIX = "downstream_step_"
CURVE_STEM = "curve"


def downstream_stem(step: int) -> str:
    return f"{DOWNSTREAM_PREFIX}{step:08d}"


def write_new_json(directory: Path, stem: str, data: dict[str, Any]) -> Path:
    """Write `data` to directory/STEM.json, or STEM_2.json, STEM_3.json... when taken.

    The file appears complete (written to a temporary name, then hard-linked into place; the
    link fails instead of replacing an existing file), so a reader never sees half a result and
    a second evaluation never clobbers the first."""
    return _write_new(directory, stem, ".json", lambda p: _dump(p, data))


def write_new_file(directory: Path, stem: str, suffix: str, write: Callable[[Path], None]) -> Path:
    """Like `write_new_json` for any file that `write(path)` produces."""
    return _write_new(directory, stem, suffix, write)


def _write_new(directory: Path, stem: str, suffix: str, write: Callable[[Path], None]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{stem}.tmp-{uuid.uuid4().hex[:8]}{suffix}"
    try:
        try:
            write(tmp)
        except OSError as exc:  # a full disk inside a writer often names no file: name it
            if exc.filename is not None:
                raise
            raise OSError(exc.errno, exc.strerror or str(exc), str(tmp)) from None
        for target in _candidates(directory, stem, suffix):
            try:
                os.link(tmp, target)
                return target
            except FileExistsError:
                continue
            except OSError:  # a file system without hard links: exclusive create, then copy
                try:
                    with open(target, "xb") as dst:
                        dst.write(tmp.read_bytes())
                    return target
                except FileExistsError:
                    continue
        raise AssertionError("unreachable")
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _candidates(directory: Path, stem: str, suffix: str):
    yield directory / f"{stem}{suffix}"
    n = 2
    while True:
        yield directory / f"{stem}_{n}{suffix}"
        n += 1


def _dump(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1, allow_nan=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _read_all(run_dir: Path, pattern: re.Pattern[str]) -> list[dict[str, Any]]:
    folder = Path(run_dir) / EVAL_DIR
    if not folder.is_dir():
        return []
    out = []
    for file in sorted(folder.iterdir()):
        if not pattern.fullmatch(file.name):
            continue
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError):
            continue  # a file edited or damaged by hand: reports skip it rather than fail
        if isinstance(data, dict):
            out.append({**data, "file": file.name})
    return out


def read_downstream(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every downstream result of a run (oldest step first, then in the order written), each
    with the `file` it came from; for reports."""
    pattern = re.compile(rf"{DOWNSTREAM_PREFIX}(\d+)(?:_(\d+))?\.json")
    rows = _read_all(Path(run_dir), pattern)

    def order(row: dict[str, Any]) -> tuple[int, int]:
        m = pattern.fullmatch(row["file"])
        assert m is not None
        return int(m.group(1)), int(m.group(2) or 1)

    return sorted(rows, key=order)


def read_curves(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every curve.json (curve_2.json, ...) of a run, in the order written."""
    pattern = re.compile(rf"{CURVE_STEM}(?:_(\d+))?\.json")
    rows = _read_all(Path(run_dir), pattern)
    return sorted(rows, key=lambda r: int(pattern.fullmatch(r["file"]).group(1) or 1))  # type: ignore[union-attr]
