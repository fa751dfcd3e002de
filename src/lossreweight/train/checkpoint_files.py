"""Writing a checkpoint's files durably: our safetensors writer (hashing as it writes) and
fsync of files and directories."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import torch

from lossreweight.integrity import HashingWriter

# safetensors' names of the dtypes a checkpoint holds.
_ST_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
    """Write `tensors` (CPU) in the safetensors format, hashing as it goes; its manifest entry.

    Our own writer rather than safetensors.torch.save_file: the bytes are hashed as they go
    out (no second read of the file for the manifest), and a failed write (a full disk) is an
    OSError naming the file. The result is a standard file that safetensors loads."""
    header: dict[str, Any] = {}
    offset = 0
    for name, t in tensors.items():
        if t.dtype not in _ST_DTYPES:
            raise TypeError(f"cannot checkpoint {name}: dtype {t.dtype}")
        size = t.numel() * t.element_size()
        header[name] = {
            "dtype": _ST_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with HashingWriter(path) as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for t in tensors.values():
            if t.numel():  # raw little-endian bytes, as safetensors stores them
                f.write(
                    memoryview(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
                )
        return f.close()
