"""A tokenizer worker process: `python -m lossreweight.data.encode_worker`, fed batches of
text on stdin and answering token arrays on stdout (pickled, in order).

Plain subprocesses rather than multiprocessing: multiprocessing's spawn re-runs the caller's
main script in every worker, which breaks (or repeats side effects of) any script that calls
`prepare_data` without an `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

import lossreweight

_STOP = object()  # the end of the batches (None is a twin verdict)


class WorkerProcess:
    """One worker: `submit(texts)` queues a batch, `result()` returns the oldest batch's
    arrays. A feeder thread writes the batches, so a worker blocked on writing a result never
    waits on us writing the next batch."""

    def __init__(self, tokenizer_dir: Path, dtype: np.dtype) -> None:
        env = dict(os.environ)
        # One tokenizer thread per worker: the processes are the parallelism.
        env.update(RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        package_root = str(Path(lossreweight.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lossreweight.data.encode_worker",
                str(tokenizer_dir),
                dtype.str,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._feeder = threading.Thread(target=self._feed, daemon=True)
        self._feeder.start()

    def start(self, twin: bool | None) -> None:
        """The first message: the main process's verdict on the tokenizer's fast twin. The
        worker starts (imports, loads the tokenizer) while the main process reaches it."""
        self._queue.put(twin)

    def submit(self, texts: list[str]) -> None:
        self._queue.put(texts)

    def result(self) -> list[np.ndarray]:
        try:
            return pickle.load(self.proc.stdout)  # type: ignore[arg-type]
        except (EOFError, pickle.UnpicklingError):
            self.proc.wait()
            err = (self.proc.stderr.read() if self.proc.stderr else b"").decode(errors="replace")
            raise RuntimeError(
                f"a tokenizer worker process failed (exit {self.proc.returncode}): "
                f"{err.strip().splitlines()[-1] if err.strip() else 'no message'}"
            ) from None

    def close(self) -> None:
        self._queue.put(_STOP)
        self._feeder.join(timeout=10)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()

    def _feed(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            while (texts := self._queue.get()) is not _STOP:  # the twin verdict first
                pickle.dump(texts, stdin, protocol=pickle.HIGHEST_PROTOCOL)
                stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker died: result() reports it
        finally:
            with contextlib.suppress(OSError):
                stdin.close()


def _serve(tokenizer_dir: str, dtype_str: str) -> None:
    from lossreweight.data.pieces import encode_texts
    from lossreweight.data.tokenizer import load_tokenizer, set_threads

    set_threads(1)
    tokenizer = load_tokenizer(tokenizer_dir)
    dtype = np.dtype(dtype_str)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        twin = pickle.load(stdin)
    except EOFError:
        return
    if twin is not None and hasattr(tokenizer, "adopt_twin_state"):
        tokenizer.adopt_twin_state(twin)
    while True:
        try:
            texts = pickle.load(stdin)
        except EOFError:
            return
        pickle.dump(encode_texts(tokenizer, texts, dtype), stdout, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.flush()


if __name__ == "__main__":
    _serve(*sys.argv[1:3])
