"""prepare_data: the configured corpus as token shards in a folder, or the user's prepared
folder as it is (`data.prepared`).

A folder is written by one process at a time (`DirectoryLock`; a second process waits for the
first, up to $LOSSREWEIGHT_LOCK_TIMEOUT seconds, and then uses what it prepared), built in a
temporary sibling (`WorkDir`: a killed run's is removed by the next) and moved into place with
its index last, so an interrupted run never leaves data that looks complete. Only the files an
earlier prepare listed as its own are replaced. Data prepared with other settings is never
replaced unless asked (`replace=True`, `prepare --force`); the cache folders (keyed by the
settings) are ours to rebuild.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from lossreweight.data.build import build
from lossreweight.data.corpus import Corpus
from lossreweight.data.data_config import DataConfig
from lossreweight.data.encode import default_workers
from lossreweight.data.mixture import resolve_mixture
from lossreweight.data.outdir import (
    check_replaceable,
    fingerprint_of,
    move_into,
    owned_files,
    reusable,
    settings_of,
)
from lossreweight.data.prepared import PreparedData
from lossreweight.data.shards import FORMAT_VERSION
from lossreweight.errors import ConfigError, DataError
from lossreweight.locking import LOCK_FILE, DirectoryLock, lock_wait_seconds
from lossreweight.safe_files import WorkDir, remove_stale_work_dirs


def cache_root(cfg: DataConfig) -> Path:
    """cfg.cache_dir, else $LOSSREWEIGHT_CACHE, else ~/.cache/lossreweight."""
    root = cfg.cache_dir or os.environ.get("LOSSREWEIGHT_CACHE") or "~/.cache/lossreweight"
    return Path(root).expanduser()


def prepare_data(
    cfg: DataConfig,
    out_dir: str | Path | None = None,
    *,
    progress: bool = True,
    workers: int | None = None,
    replace: bool = False,
) -> PreparedData:
    """Tokenize the configured corpus into shards in `out_dir` (default: a cache folder keyed
    by the settings and source versions) and open it; with `cfg.prepared`, open that folder
    as it is, read-only.

    Idempotent: when the folder already holds complete data for the same settings it is
    opened without re-tokenizing. `workers` tokenizer processes (default: one per core) give
    the same bytes as one. A folder holding data prepared with other settings is an error
    unless `replace`.
    """
    if cfg.prepared is not None:
        data = open_prepared(cfg, out_dir)
    else:
        data = _prepare(cfg, out_dir, progress, check_workers(workers), replace)
    # Fail now, not at the first batch, when the mixture does not fit the data's domains.
    resolve_mixture(cfg.mixture, {d: data.train_sequences(d) for d in data.domains})
    data.default_mixture = cfg.mixture
    return data


def open_prepared(cfg: DataConfig, out_dir: str | Path | None) -> PreparedData:
    """`data.prepared`: the user's shards as they are; nothing there is ever written."""
    root = Path(cfg.prepared or "").expanduser()
    if out_dir is not None and Path(out_dir).expanduser().resolve() != root.resolve():
        raise DataError(
            f"both data.prepared={root} and a data folder ({out_dir}) were given: drop one "
            "(data.prepared trains on that folder as it is; --data-dir prepares into a folder)"
        )
    data = PreparedData.open(root)
    if cfg.domains is not None and sorted(cfg.domains) != data.domains:
        raise DataError(
            f"data.domains cannot filter prepared data ({root} holds {', '.join(data.domains)}):"
            " drop data.domains, and give a domain weight 0 in data.mixture to leave it out"
        )
    return data


def _prepare(
    cfg: DataConfig, out_dir: str | Path | None, progress: bool, workers: int, replace: bool
) -> PreparedData:
    corpus = Corpus.from_config(cfg)
    settings = settings_of(cfg, corpus)
    fingerprint = fingerprint_of(settings)
    ours = out_dir is None  # a cache folder keyed by the fingerprint: ours to rebuild
    out = _output_folder(out_dir, cfg, fingerprint)
    partials = f".{out.name}.partial-"
    data = reusable(out, fingerprint)
    if data is not None:  # the common case, and every rank but the first: no lock needed
        remove_stale_work_dirs(out.parent, partials)  # what a killed run left
        return data
    try:
        check_replaceable(out, settings, replace=replace or ours)
    except DataError:
        # Mid-way through another process's replacement the folder can look damaged: when
        # someone holds its lock, wait for them and judge what they leave.
        if not (out / LOCK_FILE).is_file():
            raise
    created = not out.exists()
    was_empty = created or not any(out.iterdir())
    lock = DirectoryLock(
        out, what="prepared-data directory", wait=lock_wait_seconds(), on_wait=_waiting(out)
    )
    try:
        with lock:
            # Another process may have prepared the same data while we waited.
            data = reusable(out, fingerprint)
            if data is not None:
                return data
            check_replaceable(out, settings, replace=replace or ours)
            owned = owned_files(out) or set()
            remove_stale_work_dirs(out.parent, partials)
            # The console's line while it takes (`train` shows lossreweight's INFO logs).
            logging.getLogger("lossreweight.data").info("preparing data in %s ...", out)
            work = None
            try:  # not `with`: a signal at __enter__'s first line would skip __exit__
                work = WorkDir(out.parent, partials)
                build(cfg, corpus, work.path, settings, fingerprint, progress, workers)
                move_into(work.path, out, owned)
            finally:
                if work is not None:
                    work.close()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(
                f"no space left on the device while writing prepared data to {out} (nothing "
                "was kept): free disk space, or prepare into a folder on another disk"
            ) from None
        raise
    finally:
        if was_empty:
            _remove_if_only_lock(out, remove_folder=created)
    return PreparedData.open(out)


def _output_folder(out_dir: str | Path | None, cfg: DataConfig, fingerprint: str) -> Path:
    """Where the data goes. A symlinked folder is followed once, here, so that every file
    operation after it (and the temporary sibling) is on the real folder."""
    out = Path(out_dir) if out_dir is not None else cache_root(cfg) / "data" / fingerprint[:16]
    out = out.expanduser()
    if out.is_symlink():
        if not out.exists():
            raise DataError(
                f"{out} is a symbolic link to a missing folder; prepare writes through no such "
                "link: remove it or create its target"
            )
        out = out.resolve()
    return out


def _waiting(out: Path) -> Callable[[str], None]:
    def say(holder: str) -> None:
        wait = lock_wait_seconds()
        print(
            f"lossreweight: waiting for {holder} to finish preparing {out} (up to {wait:g} s; "
            "$LOSSREWEIGHT_LOCK_TIMEOUT sets how long)",
            file=sys.stderr,
            flush=True,
        )

    return say


def check_workers(workers: int | None) -> int:
    """The tokenizer processes to use: a positive integer, at most `max_workers()`."""
    if workers is None:
        return default_workers()
    limit = max_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= limit:
        raise ConfigError(
            f"workers must be an integer from 1 to {limit} (4 per core, at least 16; this "
            f"machine has {default_workers()} cores), got {workers!r}: each worker is a process "
            "with its own tokenizer"
        )
    return workers


def max_workers() -> int:
    return max(16, 4 * default_workers())


def _remove_if_only_lock(out: Path, *, remove_folder: bool) -> None:
    """After a failure, the lock file we added to an empty folder goes, and so does the folder
    if we created it: no debris."""
    with contextlib.suppress(OSError):
        if [p.name for p in out.iterdir()] == [LOCK_FILE]:
            (out / LOCK_FILE).unlink()
            if remove_folder:
                out.rmdir()


__all__ = ["FORMAT_VERSION", "cache_root", "open_prepared", "prepare_data"]
