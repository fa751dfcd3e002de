"""The corpus: every document of the configured sources, with its domain and split, in a
deterministic order.

The embedded domains are read once and kept in memory (a few MB); the user's files are
streamed on every pass, so their size is bounded by the disk, not by RAM.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

from lossreweight.data.data_config import (
    EMBEDDED_DEFAULT_MAX_CHARS,
    EMBEDDED_MAX_DOC_CHARS,
    DataConfig,
)
from lossreweight.data.documents import Document, seeded_order, split_of, truncate_at_line
from lossreweight.data.embedded import CORPUS_EXTRA, EMBEDDED, missing_package
from lossreweight.data.files import FileSource, parse_source
from lossreweight.data.readers import Fields, read_documents
from lossreweight.errors import DataError

# Bump when the way documents are chosen or split changes, so caches are rebuilt.
CORPUS_VERSION = 2
# Domains one corpus may have: each costs open shard files while preparing and a row of
# vocabulary-sized unigram counts (at 50k tokens, 400 KB); a field with one value per
# document would otherwise exhaust file handles and memory.
MAX_DOMAINS = 256


class DataWarning(UserWarning):
    """Something about the data a user should know, that does not stop the run."""


class Corpus:
    """The documents of a `DataConfig`'s sources. Construct with `Corpus.from_config`."""

    def __init__(self, cfg: DataConfig, embedded: list[str], files: list[FileSource]) -> None:
        self.cfg = cfg
        self.embedded = embedded
        self.files = files
        self._embedded_docs: list[Document] | None = None

    @classmethod
    def from_config(cls, cfg: DataConfig) -> Corpus:
        entries = cfg.source_list()
        wants_embedded = "embedded" in entries
        files = [parse_source(e) for e in entries if e != "embedded"]
        wanted = set(cfg.domains) if cfg.domains else None
        if wanted is not None and not files:
            unknown = sorted(wanted - set(EMBEDDED))
            if unknown:
                raise DataError(
                    f"unknown domain(s) {', '.join(unknown)} in data.domains; the embedded "
                    f"corpus has: {', '.join(EMBEDDED)}"
                )
        embedded: list[str] = []
        if wants_embedded:
            embedded = [d for d in EMBEDDED if wanted is None or d in wanted]
            # Never a silently smaller corpus: a domain whose source is missing is an error.
            missing = {d: p for d in embedded if (p := missing_package(d)) is not None}
            if missing:
                names = ", ".join(f"'{d}' ({p})" for d, p in missing.items())
                raise DataError(
                    f"the embedded corpus needs packages that are not installed for domain(s) "
                    f"{names}: {CORPUS_EXTRA} (or leave those domains out with data.domains)"
                )
        return cls(cfg, embedded, files)

    def identity(self) -> dict[str, object]:
        """What the documents depend on, for cache keys: source versions and file identities."""
        listing = hashlib.sha256()
        n_files = 0
        for source in self.files:
            for f in source.files:
                st = f.stat()
                listing.update(
                    f"{source.domain}|{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode()
                )
                n_files += 1
        return {
            "corpus_version": CORPUS_VERSION,
            "embedded": {d: EMBEDDED[d].version() for d in self.embedded},
            "files": {"count": n_files, "sha256": listing.hexdigest()} if self.files else None,
        }

    def file_bytes(self) -> int:
        return sum(f.stat().st_size for s in self.files for f in s.files)

    def embedded_documents(self) -> list[Document]:
        if self._embedded_docs is None:
            docs: list[Document] = []
            for domain in self.embedded:
                docs.extend(self._build_embedded(domain))
            self._embedded_docs = docs
        return self._embedded_docs

    def documents(self, advance: Callable[[int], None] | None = None) -> Iterator[Document]:
        """Every document, embedded domains first, then the files in the order given.

        `advance(n)` is told the characters (embedded) or bytes (files) consumed, for progress.
        """
        tick = advance or (lambda n: None)
        ordinals: dict[str, int] = defaultdict(int)
        used: dict[str, int] = defaultdict(int)
        for doc in self.embedded_documents():
            ordinals[doc.domain] += 1
            tick(len(doc.text))
            yield doc
        wanted = set(self.cfg.domains) if self.cfg.domains else None
        fields = Fields(self.cfg.text_field, self.cfg.domain_field)
        cap = self.cfg.max_chars_per_domain
        seen: set[str] = set(self.embedded)
        for source in self.files:
            for file in source.files:
                for raw in read_documents(source, file, tick, fields):
                    if wanted is not None and raw.domain not in wanted:
                        continue
                    if raw.domain not in seen:
                        if len(seen) >= MAX_DOMAINS:
                            raise DataError(
                                f"{raw.where}: more than {MAX_DOMAINS} domains (the next is "
                                f"{raw.domain[:60]!r}); a domain is a source folder or a "
                                "data.domain_field value: point data.domain_field at a field "
                                "with few values, or group the files into fewer domains"
                            )
                        seen.add(raw.domain)
                    text = raw.text
                    if not text.strip():
                        continue
                    if cap is not None:
                        if used[raw.domain] >= cap:
                            continue
                        text = truncate_at_line(text, cap - used[raw.domain])
                        used[raw.domain] += len(text)
                    ordinal = ordinals[raw.domain]
                    ordinals[raw.domain] += 1
                    split = split_of(self.cfg.seed, raw.domain, ordinal, self.cfg.val_fraction)
                    yield Document(raw.domain, text, raw.where, split)
        if wanted is not None:
            missing = sorted(wanted - seen)
            if missing:
                raise DataError(
                    f"data.domains names {', '.join(missing)}, but no document in the sources "
                    f"has that domain (found: {', '.join(sorted(seen)) or 'none'})"
                )

    def _build_embedded(self, domain: str) -> list[Document]:
        """A domain's documents in a seeded order, up to the character cap."""
        module = EMBEDDED[domain]
        try:
            lazy = module.documents()
        except (OSError, ImportError, LookupError, ValueError) as exc:
            raise DataError(
                f"embedded domain '{domain}' could not be read ({exc}); reinstall its package: "
                f"{CORPUS_EXTRA}"
            ) from None
        cap = self.cfg.max_chars_per_domain or EMBEDDED_DEFAULT_MAX_CHARS
        # Small caps still get several documents, so that both splits have some.
        max_doc = min(EMBEDDED_MAX_DOC_CHARS, max(cap // 8, 1000))
        order = seeded_order([name for name, _ in lazy], self.cfg.seed, domain)
        docs: list[Document] = []
        used = 0
        for i in order:
            if used >= cap:
                break
            name, load = lazy[i]
            text = load()
            if not text.strip():
                continue
            text = truncate_at_line(text, min(cap - used, max_doc))
            used += len(text)
            split = split_of(self.cfg.seed, domain, len(docs), self.cfg.val_fraction)
            docs.append(Document(domain, text, f"embedded {domain}: {name}", split))
        return docs


def describe_sources(cfg: DataConfig) -> str:
    """The sources in words, for messages."""
    return ", ".join(
        str(Path(s)) if s != "embedded" else "the embedded corpus" for s in cfg.source_list()
    )
