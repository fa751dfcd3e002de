"""wiki: the English Wikipedia excerpt that `gensim` ships as test data, as plain text."""

from __future__ import annotations

import bz2
import functools
import html
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from lossreweight.data.documents import LazyDocument

DOMAIN = "wiki"
PACKAGE = "gensim"
IMPORT_NAME = "gensim"
DUMP = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
# Bump when the markup stripping changes, so cached corpora are rebuilt.
STRIPPER_VERSION = 2
_MIN_CHARS = 200


def version() -> str:
    from lossreweight.data.sources import distribution_version

    return f"gensim-{distribution_version('gensim')}-strip{STRIPPER_VERSION}"


def dump_path() -> Path:
    from lossreweight.data.sources import package_dir

    return Path(package_dir("gensim"), DUMP)


def documents() -> list[LazyDocument]:
    path = dump_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path} (this gensim release does not ship the Wikipedia excerpt)")
    docs: list[LazyDocument] = []
    for title, markup in _articles(path):
        docs.append((title, functools.partial(_article_text, title, markup)))
    return docs


@functools.lru_cache(maxsize=1)  # decompressing the dump dominates; keep it per process
def _articles(path: Path) -> list[tuple[str, str]]:
    """(title, wikitext) of the main-namespace pages that are not redirects."""
    found: list[tuple[str, str]] = []
    with bz2.open(path) as f:
        for _, elem in ET.iterparse(f):
            if not elem.tag.endswith("}page"):
                continue
            ns = elem.findtext("{*}ns")
            title = elem.findtext("{*}title") or ""
            text = elem.findtext("{*}revision/{*}text") or ""
            if ns == "0" and not text.lstrip().lower().startswith("#redirect"):
                found.append((title, text))
            elem.clear()
    return found


def _article_text(title: str, markup: str) -> str:
    text = strip_markup(markup)
    return f"{title}\n\n{text}\n" if len(text) >= _MIN_CHARS else ""


_BLOCKS = re.compile(
    r"<!--.*?-->|<ref[^>/]*/>|<ref[^>]*>.*?</ref>|"
    r"<(math|gallery|timeline|score|syntaxhighlight|source|imagemap)[^>]*>.*?</\1>",
    re.S | re.I,
)
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_TABLE = re.compile(r"\{\|(?:(?!\{\|).)*?\|\}", re.S)
_LINK = re.compile(r"\[\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\]")  # single [..] allowed inside
_EXTERNAL = re.compile(r"\[(?:https?:)?//[^\s\]]*\s*([^\]]*)\]")
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$", re.M)
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_DROP_LINK = re.compile(r"^(?:file|image|category|media|[a-z]{2,3}(?:-[a-z]+)?):", re.I)
_TAIL_SECTIONS = {
    "see also",
    "references",
    "external links",
    "notes",
    "further reading",
    "bibliography",
    "sources",
    "footnotes",
    "citations",
}


def _link(m: re.Match[str]) -> str:
    target = m.group(1)
    if _DROP_LINK.match(target.lstrip(":")):
        return ""
    return target.rsplit("|", 1)[-1]


def _sub_until_stable(pattern: re.Pattern[str], repl: object, text: str) -> str:
    """Apply a substitution until nothing changes: removes nested markup from the inside out."""
    while True:
        new = pattern.sub(repl, text)  # type: ignore[call-overload]
        if new == text:
            return text
        text = new


def strip_markup(markup: str) -> str:
    """Wikitext to plain paragraphs: templates, tables, references, files and tags removed;
    links and headings kept as their words; reference sections at the end cut off."""
    text = _BLOCKS.sub("", markup)
    text = _sub_until_stable(_TEMPLATE, "", text)
    text = _sub_until_stable(_TABLE, "", text)
    text = _sub_until_stable(_LINK, _link, text)
    text = _EXTERNAL.sub(r"\1", text)
    text = re.sub(r"'{2,}", "", text)
    text = _TAG.sub("", text)
    text = html.unescape(text).replace("\xa0", " ")
    lines: list[str] = []
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            if heading.group(2).strip().lower() in _TAIL_SECTIONS:
                break
            line = heading.group(2)
        line = line.strip()
        if line.startswith(("|", "!", "{|", "|}", "{{", "}}", "__")):
            continue  # leftovers of broken tables/templates, magic words
        line = re.sub(r"^[*#:;]+\s*", "", line)
        lines.append(line)
    # Paragraphs separated by one blank line.
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
