"""The user's own data: text files and folders, `.jsonl` and `.parquet`, read as a stream.

Nothing here holds more than one document (or one parquet record batch) in memory, so inputs
of any size go through with bounded memory.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lossreweight.errors import DataError

TEXT_SUFFIXES = (".txt", ".md", ".py", ".rst", ".text")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
PARQUET_SUFFIXES = (".parquet",)
SUPPORTED = TEXT_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES
# Text files larger than this are cut into documents of about this size at line ends, so a
# single huge file neither fills memory nor becomes one unsplittable document.
TEXT_CHUNK_CHARS = 1 << 20

_DOMAIN_PREFIX = re.compile(r"^([A-Za-z0-9_.\-]+)=(.+)$")

Advance = Callable[[int], None]


@dataclass(frozen=True)
class RawDocument:
    domain: str
    text: str
    where: str


@dataclass(frozen=True)
class FileSource:
    """One entry of `sources`: a path, and the domain its documents get unless they name one."""

    path: Path
    domain: str | None  # from "DOMAIN=PATH"; None: derived from the path

    @property
    def files(self) -> list[Path]:
        return list_files(self.path)

    def default_domain(self, file: Path) -> str:
        if self.domain is not None:
            return self.domain
        if self.path.is_dir():
            rel = file.relative_to(self.path)
            # A folder's subfolders are its domains; its own files take the folder's name.
            return rel.parts[0] if len(rel.parts) > 1 else self.path.resolve().name
        return _stem(file)


def parse_source(entry: str) -> FileSource:
    """'DOMAIN=PATH' or 'PATH'; the path must exist."""
    domain, raw = None, entry
    m = _DOMAIN_PREFIX.match(entry)
    if m and not Path(entry).exists():
        domain, raw = m.group(1), m.group(2)
    path = Path(raw).expanduser()
    if not path.exists():
        raise DataError(f"source not found: {path} (fix the path in data.sources, or remove it)")
    if path.is_file() and not path.name.endswith(SUPPORTED):
        raise DataError(f"source {path}: unsupported file type (supported: {', '.join(SUPPORTED)})")
    return FileSource(path=path, domain=domain)


def list_files(path: Path) -> list[Path]:
    """The supported files of a source, sorted; hidden files and folders are skipped."""
    if path.is_file():
        return [path]
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.name.endswith(SUPPORTED)
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise DataError(
            f"source folder {path} has no supported files (looked for {', '.join(SUPPORTED)})"
        )
    return files


def read_documents(source: FileSource, file: Path, advance: Advance) -> Iterator[RawDocument]:
    """The documents of one file. `advance(n)` is told how many bytes were consumed."""
    default = source.default_domain(file)
    if file.name.endswith(JSONL_SUFFIXES):
        yield from _read_jsonl(file, default, advance)
    elif file.name.endswith(PARQUET_SUFFIXES):
        yield from _read_parquet(file, default, advance)
    else:
        yield from _read_text(file, default, advance)


def _stem(file: Path) -> str:
    name = file.name
    for suffix in SUPPORTED:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return file.stem


def _read_text(file: Path, domain: str, advance: Advance) -> Iterator[RawDocument]:
    part, chunk, size = 0, [], 0
    with open(file, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            advance(len(raw))
            chunk.append(_decode(raw, file, lineno))
            size += len(raw)
            if size >= TEXT_CHUNK_CHARS:
                yield RawDocument(domain, "".join(chunk), f"{file} (part {part + 1})")
                part, chunk, size = part + 1, [], 0
    if chunk:
        where = f"{file} (part {part + 1})" if part else str(file)
        yield RawDocument(domain, "".join(chunk), where)


def _decode(raw: bytes, file: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{file}:{lineno}: not UTF-8 text ({exc.reason} at byte {exc.start} of the line); "
            "convert the file to UTF-8 or remove it from the sources"
        ) from None


def _read_jsonl(file: Path, default: str, advance: Advance) -> Iterator[RawDocument]:
    opener = gzip.open if file.name.endswith(".gz") else open
    with opener(file, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            advance(len(raw))
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataError(
                    f"{file}:{lineno}: not valid JSON ({exc}); each line must be one JSON object"
                ) from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                what = (
                    "is not a JSON object"
                    if not isinstance(record, dict)
                    else (
                        "has no 'text' field"
                        if "text" not in record
                        else "has a 'text' that is not a string"
                    )
                )
                raise DataError(
                    f'{file}:{lineno}: the line {what}; each line needs a "text" string '
                    '(and optionally a "domain" string)'
                )
            domain = record.get("domain", default)
            if not isinstance(domain, str) or not domain:
                raise DataError(
                    f"{file}:{lineno}: 'domain' must be a non-empty string, got {domain!r}"
                )
            yield RawDocument(domain, record["text"], f"{file}:{lineno}")


def _read_parquet(file: Path, default: str, advance: Advance) -> Iterator[RawDocument]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{file}: reading .parquet needs pyarrow: pip install 'lossreweight[data]'"
        ) from None
    try:
        pf = pq.ParquetFile(file)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise DataError(f"{file}: not a readable parquet file ({exc})") from None
    names = pf.schema_arrow.names
    if "text" not in names:
        raise DataError(
            f"{file}: no 'text' column (columns: {', '.join(names)}); rename the column that "
            "holds the documents to 'text'"
        )
    columns = ["text"] + (["domain"] if "domain" in names else [])
    per_group = file.stat().st_size / max(pf.metadata.num_rows, 1)
    row = 0
    for batch in pf.iter_batches(batch_size=1024, columns=columns):
        texts = batch.column("text").to_pylist()
        domains = batch.column("domain").to_pylist() if "domain" in columns else None
        for j, text in enumerate(texts):
            row += 1
            if not isinstance(text, str):
                raise DataError(f"{file}: row {row}: 'text' is {text!r}, not a string")
            domain = domains[j] if domains is not None and domains[j] else default
            yield RawDocument(str(domain), text, f"{file} row {row}")
        advance(int(per_group * len(texts)))
