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
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from lossreweight.data.documents import Document
from lossreweight.data.shards import file_dtype
from lossreweight.data.tokenizer import TextTokenizer, load_tokenizer, set_threads

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
        import multiprocessing

        # spawn, not fork: the parent may hold torch's or the tokenizer's threads.
        ctx = multiprocessing.get_context("spawn")
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
        pending: deque[tuple[list[Document], Future[Any]]] = deque()
        with ProcessPoolExecutor(
            self.workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(str(self.tokenizer_dir), self.dtype.str, twin),
        ) as pool:
            try:
                for batch in it:
                    pending.append((batch, pool.submit(_encode_in_worker, [d.text for d in batch])))
                    # A bounded window: memory stays that of a few batches per worker.
                    while len(pending) > 2 * self.workers:
                        done, future = pending.popleft()
                        yield done, future.result()
                while pending:
                    done, future = pending.popleft()
                    yield done, future.result()
            except BaseException:
                for _, future in pending:
                    future.cancel()
                raise


_worker: dict[str, Any] = {}


def _init_worker(tokenizer_dir: str, dtype: str, twin: bool | None) -> None:
    # One tokenizer thread per worker: the processes are the parallelism.
    os.environ["RAYON_NUM_THREADS"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    set_threads(1)
    tokenizer = load_tokenizer(tokenizer_dir)
    if twin is not None and hasattr(tokenizer, "adopt_twin_state"):
        tokenizer.adopt_twin_state(twin)
    _worker["tokenizer"] = tokenizer
    _worker["dtype"] = file_dtype(np.dtype(dtype).name)


def _encode_in_worker(texts: list[str]) -> list[np.ndarray]:
    return encode_texts(_worker["tokenizer"], texts, _worker["dtype"])
