"""Each study's `--quick` run, once per test session and shared by the xdist workers: the
parametrised test over every study (test_studies_quick.py) and each study's own tests read the
same folder, whichever asks first runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_utils import run_cli, shared_dir
from filelock import FileLock

Run = tuple[Path, dict[str, Any], str]  # (folder, summary.json, stdout)
# A study that copies the finished runs of another sibling study: run that one first.
AFTER = {"weight-bound": "strategies"}


def lock(factory: pytest.TempPathFactory, name: str) -> FileLock:
    """The lock of a study's shared folder: hold it to run the study there again."""
    return shared_dir(factory, f"quick-studies-{name}")[1]


def quick_run(factory: pytest.TempPathFactory, name: str) -> Run:
    """`lossreweight experiment NAME --quick` (`demo --quick` for the demo) into a shared
    folder of sibling study folders; later calls read the cached folder and its stdout."""
    root, _ = shared_dir(factory, "quick-studies")
    if name in AFTER:
        quick_run(factory, AFTER[name])
    out, stdout_file = root / name, root / f"{name}.stdout"
    with lock(factory, name):
        if not stdout_file.is_file():
            root.mkdir(parents=True, exist_ok=True)
            cmd = ["demo"] if name == "demo" else ["experiment", name]
            rc, stdout, err = run_cli(*cmd, "--quick", "--out", str(out))
            assert rc == 0, err
            stdout_file.write_text(stdout)
    return out, json.loads((out / "summary.json").read_text()), stdout_file.read_text()
