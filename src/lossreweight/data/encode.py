"""Documents to token ids, in this process or in N worker processes, always in input order.

Parallel preparation must give the same bytes as one worker: the main process reads the
documents and writes the shards in order; the workers only turn batches of text into token
arrays, and their results are taken back in submission order.

A long document is encoded in pieces cut at a single whitespace character between two
non-space characters, where byte-level BPE pre-tokenizers (GPT-2's and cl100k's regexes)
split anyway, so the ids are those of the whole document while the tokenizer never sees more
than `MAX_PIECE_CHARS` at once: a 50 MB document costs tens of MB, not gigabytes.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from lossreweight.data.documents import Document
from lossreweight.data.encode_worker import WorkerProcess
from lossreweight.data.tokenizer import TextTokenizer, set_threads

MAX_PIECE_CHARS = 1 << 20
# Characters of text per tokenizer call: enough for its threads, small enough for memory.
_CALL_CHARS = 2 << 20
# Below this much text, starting worker processes costs more than it saves; the work is then
# done here with `workers` tokenizer threads instead (the same ids either way).
MIN_CHARS_FOR_PROCESSES = 8 << 20
_SAFE_CUT = re.compile(r"\S\s\S")


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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


class Encoder:
    """Encodes batches of documents with `workers` parallel lanes, yielding results in order."""

    def __init__(
        self,
        tokenizer: TextTokenizer,
        tokenizer_dir: Path,
        dtype: np.dtype,
        workers: int,
        total_chars: int,
    ) -> None:
        self.tokenizer = tokenizer
        self.tokenizer_dir = tokenizer_dir
        self.dtype = dtype
        self.workers = max(1, workers)
        self.processes = self.workers > 1 and total_chars >= MIN_CHARS_FOR_PROCESSES

    def map(
        self, batches: Iterable[list[Document]]
    ) -> Iterator[tuple[list[Document], list[np.ndarray]]]:
        if not self.processes:
            set_threads(self.workers)
            try:
                for batch in batches:
                    yield batch, encode_texts(self.tokenizer, [d.text for d in batch], self.dtype)
            finally:
                set_threads(None)
            return
        yield from self._map_processes(batches)

    def _map_processes(
        self, batches: Iterable[list[Document]]
    ) -> Iterator[tuple[list[Document], list[np.ndarray]]]:
        it = iter(batches)
        first = next(it, None)
        if first is None:
            return
        # The first batch here: it settles whether the tokenizer's fast twin is exact, which
        # every worker then takes as given instead of checking a batch of its own.
        set_threads(self.workers)
        try:
            yield first, encode_texts(self.tokenizer, [d.text for d in first], self.dtype)
        finally:
            set_threads(None)
        twin = getattr(self.tokenizer, "twin_state", None)
        workers = [WorkerProcess(self.tokenizer_dir, self.dtype, twin) for _ in range(self.workers)]
        pending: deque[tuple[list[Document], WorkerProcess]] = deque()
        try:
            for k, batch in enumerate(it):
                worker = workers[k % len(workers)]
                worker.submit([d.text for d in batch])
                pending.append((batch, worker))
                # A bounded window: memory stays that of a few batches per worker.
                while len(pending) > 2 * len(workers):
                    done, w = pending.popleft()
                    yield done, w.result()
            while pending:
                done, w = pending.popleft()
                yield done, w.result()
        finally:
            for w in workers:
                w.close()
