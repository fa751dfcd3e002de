"""Helpers shared by the tests that drive the command line and share output folders."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from lossreweight.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def shared_dir(factory: pytest.TempPathFactory, name: str) -> tuple[Path, FileLock]:
    """A folder shared by the xdist workers of this session, and a lock for it.

    A module's tests can land on both workers when its xdist_group is not honoured (seen with
    pytest 9.2 + xdist 3.8), so the first worker builds the folder under the lock and the
    second finds every run cached."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    return base / name, FileLock(str(base / f"{name}.lock"))


def run_cli(*args: str) -> tuple[int, str, str]:
    """`lossreweight ARGS` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


def pip_install(src: Path, target: Path) -> Path:
    """`pip install` a package folder into `target` (offline, no build isolation, no deps): a
    plugin package the tests put on sys.path."""
    work = target.parent / f"{src.name}-src"  # pip may write build files next to the source
    shutil.copytree(src, work)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    cmd += ["--no-index", "--target", str(target), str(work)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target
