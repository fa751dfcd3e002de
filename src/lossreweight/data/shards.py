"""Token shards: flat binary arrays of token ids, one stream per (split, domain), and the JSON
index that describes them.

Layout of a prepared directory:

    index.json                   written last: its presence means the data is complete
    tokenizer/                   the tokenizer (see tokenizer.py)
    train/0003-00000.bin         split / <domain number>-<shard number>, raw little-endian ids
    val/0003-00000.bin

A domain's stream is its documents, each followed by the end-of-text id. Sequence i of a
domain is tokens [i*seq_len, (i+1)*seq_len) of its stream; every shard but the last holds a
whole number of sequences, so no sequence crosses a shard or a domain. The tail that does not
fill a sequence stays in the last shard, unused.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lossreweight.errors import DataError
from lossreweight.safe_files import atomic_write, open_new

FORMAT = "lossreweight-token-shards"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"
SPLITS = ("train", "val")
# The cheap checksum reads this many bytes at each end of a shard.
_SAMPLE_BYTES = 1 << 16


def dtype_for_vocab(vocab_size: int) -> str:
    """uint16 when every id fits, else uint32."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def file_dtype(name: str) -> np.dtype:
    """The on-disk dtype: shards are little-endian whatever the machine."""
    return np.dtype(name).newbyteorder("<")


def sample_crc32(path: Path, size: int) -> int:
    """CRC-32 of the first and last 64 KiB and of the size: cheap, catches truncation and
    most overwrites. `full_crc32` reads everything."""
    with open(path, "rb") as f:
        head = f.read(_SAMPLE_BYTES)
        tail = b""
        if size > _SAMPLE_BYTES:
            f.seek(max(size - _SAMPLE_BYTES, _SAMPLE_BYTES))
            tail = f.read()
    return zlib.crc32(tail, zlib.crc32(head, zlib.crc32(str(size).encode())))


def full_crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return crc


@dataclass
class ShardInfo:
    file: str  # relative to the data directory
    tokens: int
    crc32: int
    sample_crc32: int

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "tokens": self.tokens,
            "crc32": self.crc32,
            "sample_crc32": self.sample_crc32,
        }


@dataclass
class StreamWriter:
    """Appends one (split, domain) token stream to shard files of `shard_tokens` tokens."""

    root: Path
    split: str
    number: int
    dtype: np.dtype
    shard_tokens: int
    shards: list[ShardInfo] = field(default_factory=list)
    tokens: int = 0
    _file: Any = None
    _in_shard: int = 0
    _crc: int = 0

    def write(self, ids: np.ndarray) -> None:
        ids = ids.astype(self.dtype, copy=False)  # self.dtype is little-endian
        while ids.size:
            if self._file is None:
                self._open()
            take = min(ids.size, self.shard_tokens - self._in_shard)
            data = ids[:take].tobytes()
            self._file.write(data)
            self._crc = zlib.crc32(data, self._crc)
            self._in_shard += take
            self.tokens += take
            ids = ids[take:]
            if self._in_shard == self.shard_tokens:
                self._close_shard()

    def close(self) -> list[ShardInfo]:
        if self._file is not None:
            self._close_shard()
        return self.shards

    def _open(self) -> None:
        rel = f"{self.split}/{self.number:04d}-{len(self.shards):05d}.bin"
        (self.root / self.split).mkdir(parents=True, exist_ok=True)
        # A new file (O_EXCL | O_NOFOLLOW): a link planted in the folder is never written through.
        self._file = os.fdopen(open_new(self.root / rel), "wb", buffering=1 << 20)
        self._rel, self._in_shard, self._crc = rel, 0, 0

    def _close_shard(self) -> None:
        self._file.close()
        self._file = None
        path = self.root / self._rel
        size = self._in_shard * self.dtype.itemsize
        self.shards.append(
            ShardInfo(self._rel, self._in_shard, self._crc, sample_crc32(path, size))
        )


def write_index(root: Path, index: dict[str, Any]) -> None:
    """Write index.json atomically (a new temp file, fsync, rename)."""
    atomic_write(root / INDEX_FILE, (json.dumps(index, indent=1) + "\n").encode())


def read_index(root: Path) -> dict[str, Any]:
    """Read and check index.json: present, parseable, and of this format version."""
    path = root / INDEX_FILE
    if not root.is_dir():
        raise DataError(
            f"prepared data not found: {root} is not a directory (run lossreweight prepare)"
        )
    if not path.is_file():
        raise DataError(
            f"{root}: no {INDEX_FILE}; this is not prepared data, or a prepare was interrupted "
            "(run lossreweight prepare again)"
        )
    try:
        index = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: unreadable index ({exc}); run lossreweight prepare again"
        ) from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DataError(f"{path}: not a lossreweight token-shard index")
    version = index.get("format_version")
    if version != FORMAT_VERSION:
        raise DataError(
            f"{path}: written by another version of lossreweight (shard format {version}, this "
            f"version reads {FORMAT_VERSION}); run lossreweight prepare again to rebuild it"
        )
    return index


def check_shards(root: Path, index: dict[str, Any], *, full: bool = False) -> None:
    """Every shard exists with the size and checksum that the index records."""
    itemsize = file_dtype(index["dtype"]).itemsize
    for split in SPLITS:
        for domain, entry in index["splits"][split].items():
            for shard in entry["shards"]:
                path = root / shard["file"]
                where = f"{split} shard {path} (domain '{domain}')"
                if not path.is_file():
                    raise DataError(f"{where} is missing; run lossreweight prepare again")
                size = path.stat().st_size
                expected = shard["tokens"] * itemsize
                if size != expected:
                    raise DataError(
                        f"{where} has {size} bytes, the index says {expected}: the file is "
                        "truncated or was replaced; run lossreweight prepare again"
                    )
                crc = full_crc32(path) if full else sample_crc32(path, size)
                if crc != shard["crc32" if full else "sample_crc32"]:
                    raise DataError(
                        f"{where} fails its checksum: the file was modified; run lossreweight "
                        "prepare again"
                    )
