"""Training a study's missing runs in several processes side by side (`--jobs N`).

Each worker process trains whole runs, one at a time, from a shared queue; the parent then
reads every run back from disk (cached), so the summary is the same as a one-process run.
A run is a pure function of its config, so the order the workers take runs in never changes
a result. Workers start with `spawn` (a clean interpreter: no torch state forked mid-use).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

EnsureRun = Callable[..., Any]


class WorkerStopped(RuntimeError):
    """A worker's run was stopped by a signal (its checkpoint is saved; a re-run resumes)."""


_STOPPED = False  # in a worker: a signal stopped one of its runs, so it starts no other


def _train_one(
    ensure_run: EnsureRun,
    base: str,
    overrides: list[str],
    run_dir: str,
    label: str,
    reuse_from: list[str],
) -> str:
    from lossreweight.train import load_config

    def say(msg: str) -> None:
        print(f"{label}{msg}", flush=True)

    global _STOPPED
    if _STOPPED:
        raise WorkerStopped(f"{label.strip()} not started: the study is stopping")
    cfg = load_config(base, overrides)
    try:
        ensure_run(cfg, Path(run_dir), log=say, reuse_from=[Path(p) for p in reuse_from])
    except KeyboardInterrupt:  # a plain exception reaches the parent, which stops the pool
        _STOPPED = True
        raise WorkerStopped(
            f"{label.strip()} stopped by a signal; its checkpoint is saved"
        ) from None
    return run_dir


def train_in_parallel(
    ensure_run: EnsureRun,
    base: str | Path,
    todo: Sequence[tuple[list[str], Path, str]],
    jobs: int,
    reuse_from: Sequence[Path] = (),
) -> None:
    """Train every (overrides, run_dir, label) of `todo` with `jobs` worker processes, each
    calling `ensure_run(cfg, run_dir, log=..., reuse_from=...)` (`runs.ensure_run`; passed in,
    a module-level function pickles by name, so this module needs nothing of `runs`)."""
    if not todo:
        return
    sys.stdout.flush()
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=ctx)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        futures = [
            pool.submit(
                _train_one,
                ensure_run,
                str(base),
                list(ov),
                str(d),
                label,
                [str(p) for p in reuse_from],
            )
            for ov, d, label in todo
        ]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        errors = [f.exception() for f in done if f.exception() is not None]
        if errors:
            _stop(pool)
            if all(isinstance(e, WorkerStopped) for e in errors):
                raise KeyboardInterrupt
            raise errors[0]
    except KeyboardInterrupt:
        _stop(pool)  # every worker checkpoints its run and exits; nothing new starts
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        pool.shutdown(wait=True, cancel_futures=True)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and ask the running workers to stop (SIGTERM: the trainer
    saves a checkpoint and returns)."""
    for pid in list(getattr(pool, "_processes", {}) or {}):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    pool.shutdown(wait=False, cancel_futures=True)
