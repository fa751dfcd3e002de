"""Reading the user's files as a stream of documents: text, JSON lines (plain, gzip, zstd),
parquet and Hugging Face arrow files.

Nothing here holds more than one line, one text chunk or one record batch in memory, and a
JSON line longer than `MAX_LINE_BYTES` is refused before it is read whole, so inputs of any
size, and any single document, go through with bounded memory.
"""

from __future__ import annotations

import codecs
import errno
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossreweight.data.compressed import open_binary, read_lines
from lossreweight.data.files import ARROW_SUFFIXES, JSONL_SUFFIXES, PARQUET_SUFFIXES, FileSource
from lossreweight.errors import DataError

# Text files are cut into documents of about this size at line ends (a longer line is cut
# where it reaches the size), so a huge file is neither one document nor held in memory.
TEXT_CHUNK_CHARS = 1 << 20
# One JSON line (one document) may be at most this long.
MAX_LINE_BYTES = 64 << 20
_BATCH_ROWS = 256

Advance = Callable[[int], None]


@dataclass(frozen=True)
class RawDocument:
    domain: str
    text: str
    where: str


@dataclass(frozen=True)
class Fields:
    """Where a record keeps its text and its domain (`DataConfig.text_field/domain_field`)."""

    text: str = "text"
    domain: str | None = None  # None: an optional top-level "domain"


def read_documents(
    source: FileSource, file: Path, advance: Advance, fields: Fields = Fields()
) -> Iterator[RawDocument]:
    """The documents of one file. `advance(n)` is told how many bytes were consumed."""
    default = source.default_domain(file)
    if file.name.endswith(JSONL_SUFFIXES):
        yield from _read_jsonl(file, default, advance, fields)
    elif file.name.endswith(PARQUET_SUFFIXES):
        yield from _read_table(file, default, advance, fields, _parquet_batches)
    elif file.name.endswith(ARROW_SUFFIXES):
        yield from _read_table(file, default, advance, fields, _arrow_batches)
    else:
        yield from _read_text(file, default, advance)


def lookup(record: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    """(found, value) of a field: an exact key first (keys may contain dots), else a dotted
    path through nested objects (meta.redpajama_set_name)."""
    if dotted in record:
        return True, record[dotted]
    node: Any = record
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def to_document(record: Any, where: str, default: str, fields: Fields) -> RawDocument:
    if not isinstance(record, dict):
        raise DataError(f"{where}: the record is not a JSON object; each line must be one object")
    found, text = lookup(record, fields.text)
    if not found or not isinstance(text, str):
        what = (
            f"has no '{fields.text}' field"
            if not found
            else f"has a '{fields.text}' that is not a string"
        )
        raise DataError(
            f"{where}: the record {what}; each record needs its text there (set "
            "data.text_field if your records keep it elsewhere)"
        )
    if fields.domain is None:
        domain = record.get("domain", default)
        key = "domain"
    else:
        key = fields.domain
        found, domain = lookup(record, key)
        if not found:
            raise DataError(
                f"{where}: the record has no '{key}' (data.domain_field); fix data.domain_field, "
                f"or leave it out to put the file's documents in domain '{default}'"
            )
    if not isinstance(domain, str) or not domain:
        raise DataError(f"{where}: '{key}' must be a non-empty string, got {domain!r}")
    return RawDocument(domain, text, where)


def _read_text(file: Path, domain: str, advance: Advance) -> Iterator[RawDocument]:
    decoder = codecs.getincrementaldecoder("utf-8")()
    part, chunk, size, lineno = 0, [], 0, 1
    with open_binary(file) as f:
        while raw := f.readline(TEXT_CHUNK_CHARS):
            advance(len(raw))
            try:
                chunk.append(decoder.decode(raw))
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{file}:{lineno}: not UTF-8 text ({exc.reason}); convert the file to UTF-8 "
                    "or remove it from the sources"
                ) from None
            lineno += raw.endswith(b"\n")
            size += len(raw)
            if size >= TEXT_CHUNK_CHARS:
                yield RawDocument(domain, "".join(chunk), f"{file} (part {part + 1})")
                part, chunk, size = part + 1, [], 0
    if chunk:
        where = f"{file} (part {part + 1})" if part else str(file)
        yield RawDocument(domain, "".join(chunk), where)


def _read_jsonl(
    file: Path, default: str, advance: Advance, fields: Fields
) -> Iterator[RawDocument]:
    def too_long(lineno: int) -> DataError:
        return DataError(
            f"{file}:{lineno}: a line longer than {MAX_LINE_BYTES >> 20} MiB; split that "
            "document into smaller records"
        )

    with open_binary(file) as f:
        for lineno, raw in enumerate(read_lines(f, MAX_LINE_BYTES, too_long), 1):
            advance(len(raw))
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataError(
                    f"{file}:{lineno}: not valid JSON ({exc}); each line must be one JSON object"
                ) from None
            yield to_document(record, f"{file}:{lineno}", default, fields)
            del raw, record


def _columns(names: list[str], fields: Fields) -> list[str]:
    """The top-level columns that hold the text and the domain."""
    wanted = [fields.text] + ([fields.domain] if fields.domain else ["domain"])
    cols = []
    for i, f in enumerate(wanted):
        col = f if f in names else f.split(".")[0]
        if col not in names:
            if i == 0:
                raise DataError(
                    f"no '{col}' column (columns: {', '.join(names)}); set data.text_field to "
                    "the column that holds the documents"
                )
            if fields.domain is not None:
                raise DataError(
                    f"no '{col}' column for data.domain_field={fields.domain!r} (columns: "
                    f"{', '.join(names)})"
                )
            continue
        if col not in cols:
            cols.append(col)
    return cols


def _read_table(
    file: Path,
    default: str,
    advance: Advance,
    fields: Fields,
    batches: Callable[[Path, Fields], Iterator[tuple[Any, int]]],
) -> Iterator[RawDocument]:
    row = 0
    for batch, consumed in batches(file, fields):
        for record in batch.to_pylist():
            row += 1
            yield to_document(record, f"{file} row {row}", default, fields)
        advance(consumed)


def _pyarrow(file: Path) -> Any:
    try:
        import pyarrow
    except ImportError:
        raise DataError(
            f"{file}: reading {file.suffix} files needs pyarrow: pip install 'lossreweight[data]'"
        ) from None
    return pyarrow


def _parquet_batches(file: Path, fields: Fields) -> Iterator[tuple[Any, int]]:
    _pyarrow(file)
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(file)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise DataError(f"{file}: not a readable parquet file ({exc}); re-download it") from None
    try:
        columns = _columns(pf.schema_arrow.names, fields)
    except DataError as exc:
        raise DataError(f"{file}: {exc}") from None
    per_row = file.stat().st_size / max(pf.metadata.num_rows, 1)
    for batch in _guard(file, pf.iter_batches(_BATCH_ROWS, columns=columns)):
        yield batch, int(per_row * batch.num_rows)


def _arrow_batches(file: Path, fields: Fields) -> Iterator[tuple[Any, int]]:
    """An arrow IPC file as `datasets` writes it (the streaming format), memory-mapped."""
    pa = _pyarrow(file)
    try:
        source = pa.memory_map(str(file))
        reader = pa.ipc.open_stream(source)
    except Exception as exc:
        raise DataError(f"{file}: not a readable arrow file ({exc}); re-save the dataset") from None
    try:
        columns = _columns(reader.schema.names, fields)
    except DataError as exc:
        raise DataError(f"{file}: {exc}") from None

    for batch in _guard(file, iter(reader)):
        # Slices of a memory map: nothing is copied until to_pylist, one small slice at a time.
        for start in range(0, batch.num_rows, _BATCH_ROWS):
            part = batch.slice(start, _BATCH_ROWS)
            yield part.select(columns), part.nbytes


def _guard(file: Path, batches: Iterator[Any]) -> Iterator[Any]:
    """Batches, with pyarrow's read errors (a truncated file) as one-line DataErrors."""
    it = iter(batches)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except DataError:
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise DataError(
                f"{file}: the file is truncated/corrupt ({exc}); re-download it"
            ) from None
        except Exception as exc:  # pyarrow.ArrowInvalid and friends
            raise DataError(
                f"{file}: the file is truncated/corrupt ({exc}); re-download it"
            ) from None
        yield batch
