"""Extensions from installed packages, found through Python entry points.

A package declares `[project.entry-points."lossreweight.<kind>"]` with `name = "module:object"`
(strategies: `lossreweight.strategies`; studies: `lossreweight.studies`). `installed` lists them
by name without importing anything; `load` imports one and turns any failure into a one-line
error naming the entry point, so a broken package costs only its own names.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Container
from typing import Any

EntryPoint = importlib.metadata.EntryPoint


def installed(group: str, taken: Container[str] = ()) -> dict[str, EntryPoint]:
    """The entry points of `group` by name; names in `taken` (built-in, reserved) are not a
    package's to claim. Two packages with one name: the first found wins."""
    found: dict[str, EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=group):
        if ep.name not in taken:
            found.setdefault(ep.name, ep)
    return found


def describe(ep: EntryPoint) -> str:
    """The one-line summary of the package that declares `ep` (its metadata; no import)."""
    dist = getattr(ep, "dist", None)
    summary = (dist.metadata.get("Summary") if dist is not None else None) or ""
    return summary.strip().splitlines()[0].rstrip(".") if summary.strip() else ""


def load(ep: EntryPoint, what: str, *, error: type[Exception] = ValueError) -> Any:
    """Import the object `ep` names; any failure is `error` in one line (`what`: e.g. "study")."""
    try:
        return ep.load()
    except Exception as exc:  # a user's package: any import error, reported in one line
        raise error(
            f"{what} {ep.name!r} could not be loaded from entry point {ep.name} = {ep.value!r} "
            f"(group {ep.group}): {type(exc).__name__}: {exc}; fix or uninstall the package "
            "that declares it"
        ) from None
