"""Output folders of `experiment`, `compare` and `demo`: a command writes only into a new or
empty folder, or into a folder that the same command (and study) wrote before.

The first run writes a small marker file naming its owner; a later run with another owner
(another study, `compare` onto a demo, a training run, a stranger's non-empty folder) is
refused in one line, before anything is written. Folders written before markers existed are
recognised by their summary.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lossreweight.errors import ConfigError
from lossreweight.experiments.runs import is_run_dir

MARKER = ".lossreweight-output.json"


def _describe(owner: dict[str, Any]) -> str:
    kind, name = owner.get("kind"), owner.get("name")
    return f"`lossreweight {kind} {name}`" if kind == "experiment" else f"`lossreweight {kind}`"


def _legacy_owner(out: Path) -> dict[str, Any] | None:
    """The owner of a folder written before markers, from its summary.json."""
    try:
        s = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(s, dict):
        return None
    if isinstance(s.get("study"), str):
        return {"kind": "experiment", "name": s["study"]}
    title = str((s.get("report") or {}).get("title", ""))
    if s.get("command") == "demo" or (s.get("command") == "compare" and title.startswith("demo")):
        return {"kind": "demo", "name": "demo"}
    if s.get("command") == "compare":
        return {"kind": "compare", "name": "compare"}
    return None


def read_owner(out: Path) -> dict[str, Any] | None:
    """Who wrote `out` (kind and name), or None if no lossreweight command did."""
    try:
        owner = json.loads((Path(out) / MARKER).read_text())
    except (OSError, ValueError):
        return _legacy_owner(Path(out))
    return owner if isinstance(owner, dict) else None


def claim_output_dir(out: Path, kind: str, name: str) -> None:
    """Make `out` the output folder of `kind` (experiment, compare, demo) `name`, or refuse.

    Accepted: a missing or empty folder, or one this same command and study wrote before
    (re-running reuses its finished runs). Refused: a training run, another command's or
    study's output, a non-empty folder that no lossreweight command wrote.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; give a new or empty folder")
    if out.is_dir():
        if is_run_dir(out):
            raise ConfigError(
                f"--out {out} is a training run; give a new or empty folder (nothing was written)"
            )
        owner = read_owner(out)
        if owner is not None:
            if (owner.get("kind"), owner.get("name")) != (kind, name):
                raise ConfigError(
                    f"--out {out} holds the output of {_describe(owner)}; give another folder "
                    "(nothing was written)"
                )
        elif any(out.iterdir()):
            raise ConfigError(
                f"--out {out} is not empty and was not written by lossreweight; give a new or "
                "empty folder (nothing was written)"
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(json.dumps({"kind": kind, "name": name}) + "\n")
