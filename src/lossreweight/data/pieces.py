"""Token ids of documents, a long document in pieces.

A long document is encoded in pieces cut at a single whitespace character between two
non-space characters, where byte-level BPE pre-tokenizers (GPT-2's and cl100k's regexes)
split anyway, so the ids are those of the whole document while the tokenizer never sees more
than `MAX_PIECE_CHARS` at once: a 50 MB document costs tens of MB, not gigabytes.
"""

from __future__ import annotations

import re

import numpy as np

from lossreweight.data.tokenizer import TextTokenizer

MAX_PIECE_CHARS = 1 << 20
# Characters of text per tokenizer call: enough for its threads, small enough for memory.
_CALL_CHARS = 2 << 20
_SAFE_CUT = re.compile(r"\S\s\S")


def split_long(text: str, limit: int | None = None) -> list[str]:
    """`text` as consecutive pieces of at most `limit` (default `MAX_PIECE_CHARS`) characters,
    cut where the pre-tokenizer would split anyway when possible."""
    limit = limit or MAX_PIECE_CHARS
    if len(text) <= limit:
        return [text]
    pieces, start = [], 0
    while len(text) - start > limit:
        end = start + limit
        cut = None
        # The last safe cut in the second half of the window.
        for m in _SAFE_CUT.finditer(text, start + limit // 2, end + 1):
            cut = m.start() + 1
        pieces.append(text[start : cut or end])
        start = cut or end
    pieces.append(text[start:])
    return pieces


def encode_texts(tokenizer: TextTokenizer, texts: list[str], dtype: np.dtype) -> list[np.ndarray]:
    """Each text's ids followed by the end-of-text id, as arrays of `dtype`."""
    out: list[list[np.ndarray]] = [[] for _ in texts]
    call: list[tuple[int, str]] = []
    size = 0

    def flush() -> None:
        nonlocal call, size
        ids = tokenizer.encode_batch([t for _, t in call])
        for (i, _), piece in zip(call, ids, strict=True):
            out[i].append(np.asarray(piece, dtype=dtype))
        call, size = [], 0

    for i, text in enumerate(texts):
        for piece in split_long(text):
            call.append((i, piece))
            size += len(piece)
            if size >= _CALL_CHARS:
                flush()
    if call:
        flush()
    eos = np.array([tokenizer.eos_id], dtype=dtype)
    return [np.concatenate([*parts, eos]) for parts in out]
