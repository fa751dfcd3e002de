"""Opening a data file as a binary stream: plain, gzip or zstandard, with damage reported as
one-line `DataError`s naming the file (never EOFError, zlib.error or ZstdError)."""

from __future__ import annotations

import errno
import gzip
import io
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from lossreweight.errors import DataError

_READ = 1 << 20


def truncated(file: Path, detail: str) -> DataError:
    return DataError(
        f"{file}: the file is truncated/corrupt ({detail}); re-download it, or remove it from "
        "data.sources"
    )


def _not_gzip(file: Path) -> DataError:
    with open(file, "rb") as f:
        head = f.read(8)
    return DataError(
        f"{file}: not a gzip file (it starts with {head!r}); if it is plain JSON lines, "
        "rename it to .jsonl, else re-download it"
    )


@contextmanager
def open_binary(file: Path) -> Iterator[BinaryIO]:
    """The decompressed bytes of `file` (by its suffix), as a buffered binary stream.

    Errors raised while reading from the stream inside the `with` block are translated too.
    """
    name = file.name
    try:
        if name.endswith(".gz"):
            with gzip.open(file, "rb") as f:
                yield f  # type: ignore[misc]
        elif name.endswith(".zst"):
            with open(file, "rb") as raw:
                yield io.BufferedReader(_ZstdReader(raw, file), buffer_size=_READ)
        else:
            with open(file, "rb") as f:
                yield f
    except gzip.BadGzipFile:
        raise _not_gzip(file) from None
    except EOFError as exc:  # gzip: "Compressed file ended before the end-of-stream marker"
        raise truncated(file, str(exc) or "it ends early") from None
    except zlib.error as exc:
        raise truncated(file, f"zlib: {exc}") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise  # not this file's fault: the caller reports a full disk
        if exc.errno is None and type(exc).__name__ == "ZstdError":
            raise truncated(file, f"zstd: {exc}") from None
        raise


class _ZstdReader(io.RawIOBase):
    """A zstandard stream that, unlike `ZstdDecompressor.stream_reader`, notices when the file
    ends inside a frame (a truncated download) and reads every frame of a multi-frame file."""

    def __init__(self, raw: BinaryIO, file: Path) -> None:
        try:
            import zstandard
        except ImportError:
            raise DataError(
                f"{file}: reading .zst files needs the zstandard package: "
                "pip install 'lossreweight[data]'"
            ) from None
        self._zstd: Any = zstandard
        self._raw = raw
        self._file = file
        self._dctx = zstandard.ZstdDecompressor()
        self._obj: Any = None
        self._pending = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._done:
            self._fill()
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _fill(self) -> None:
        chunk = self._raw.read(_READ)
        if not chunk:
            if self._obj is not None and not self._obj.eof:
                raise truncated(self._file, "it ends inside a zstd frame")
            self._done = True
            return
        out = []
        while chunk:
            if self._obj is None or self._obj.eof:
                self._obj = self._dctx.decompressobj()
            try:
                out.append(self._obj.decompress(chunk))
            except self._zstd.ZstdError as exc:
                raise truncated(self._file, f"zstd: {exc}") from None
            # Bytes after the end of a frame begin the next one.
            chunk = self._obj.unused_data if self._obj.eof else b""
        self._pending = b"".join(out)


def read_lines(
    stream: BinaryIO, limit: int, on_long: Callable[[int], DataError]
) -> Iterator[bytes]:
    """The lines of a stream, never reading more than `limit` bytes into memory for one line:
    a longer line raises `on_long(line_number)` before it is read whole."""
    lineno = 0
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        lineno += 1
        if len(line) > limit and not line.endswith(b"\n"):
            raise on_long(lineno)
        yield line
