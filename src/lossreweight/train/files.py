"""Reading the small JSON files of a run directory (config, checkpoint state) safely."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lossreweight.errors import UserError


def read_json_object(file: Path, *, what: str, fix: str, error: type[UserError]) -> dict[str, Any]:
    """A JSON object from `file`; unreadable, malformed or non-object content raises `error`
    with one line naming the file and ending with `fix`."""
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {file}: {' '.join(str(exc).split())[:120]}; {fix}") from None
    if not isinstance(data, dict):
        raise error(f"{file} is not {what} (not a mapping); {fix}")
    return data
