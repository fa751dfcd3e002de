"""Documents to token ids, in this process or in N worker processes, always in input order.

Parallel preparation must give the same bytes as one worker: the main process reads the
documents and writes the shards in order; the workers only turn batches of text into token
arrays, and their results are taken back in submission order.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from lossreweight.data.documents import Document
from lossreweight.data.encode_worker import WorkerProcess
from lossreweight.data.pieces import encode_texts
from lossreweight.data.tokenizer import TextTokenizer, set_threads

# Below this much text, starting worker processes costs more than it saves; the work is then
# done here with `workers` tokenizer threads instead (the same ids either way).
MIN_CHARS_FOR_PROCESSES = 8 << 20


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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
        # The workers start (imports, tokenizer) while the first batch is encoded here: it
        # settles whether the tokenizer's fast twin is exact, which every worker then takes
        # as given instead of checking a batch of its own.
        workers = [WorkerProcess(self.tokenizer_dir, self.dtype) for _ in range(self.workers)]
        pending: deque[tuple[list[Document], WorkerProcess]] = deque()
        try:
            set_threads(self.workers)
            try:
                ids = encode_texts(self.tokenizer, [d.text for d in first], self.dtype)
            finally:
                set_threads(None)
            twin = getattr(self.tokenizer, "twin_state", None)
            for w in workers:
                w.start(twin)
            yield first, ids
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
