"""prepare_data: the configured corpus as token shards in a folder, or the user's prepared
folder as it is (`data.prepared`).

A folder is written by one process at a time (`DirectoryLock`), built in a temporary sibling
and moved into place with its index last, so an interrupted run never leaves data that looks
complete. Data prepared with other settings is never replaced unless asked (`replace=True`,
`prepare --force`); the cache folders (keyed by the settings) are ours to rebuild.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from pathlib import Path

from lossreweight.data.build import build
from lossreweight.data.config import DataConfig
from lossreweight.data.corpus import Corpus
from lossreweight.data.encode import default_workers
from lossreweight.data.mixture import resolve_mixture
from lossreweight.data.outdir import (
    check_replaceable,
    fingerprint_of,
    move_into,
    reusable,
    settings_of,
)
from lossreweight.data.prepared import PreparedData
from lossreweight.data.shards import FORMAT_VERSION
from lossreweight.errors import DataError
from lossreweight.locking import LOCK_FILE, DirectoryLock


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
        data = _prepare(cfg, out_dir, progress, workers or default_workers(), replace)
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
    out = Path(out_dir) if out_dir is not None else cache_root(cfg) / "data" / fingerprint[:16]
    data = reusable(out, fingerprint)
    if data is not None:  # the common case, and every rank but the first: no lock needed
        return data
    check_replaceable(out, settings, replace=replace or ours)
    created = not out.exists()
    was_empty = created or not any(out.iterdir())
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        with DirectoryLock(out, what="prepared-data directory"):
            # Another process may have finished the same data while we waited for nothing.
            data = reusable(out, fingerprint)
            if data is not None:
                return data
            check_replaceable(out, settings, replace=replace or ours)
            _remove_stale_partials(out)
            tmp.mkdir()
            build(cfg, corpus, tmp, settings, fingerprint, progress, workers)
            move_into(tmp, out)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(
                f"no space left on the device while writing prepared data to {out} (nothing "
                "was kept): free disk space, or prepare into a folder on another disk"
            ) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if was_empty:
            _remove_if_only_lock(out, remove_folder=created)
    return PreparedData.open(out)


def _remove_if_only_lock(out: Path, *, remove_folder: bool) -> None:
    """After a failure, the lock file we added to an empty folder goes, and so does the folder
    if we created it: no debris."""
    with contextlib.suppress(OSError):
        if [p.name for p in out.iterdir()] == [LOCK_FILE]:
            (out / LOCK_FILE).unlink()
            if remove_folder:
                out.rmdir()


def _remove_stale_partials(out: Path) -> None:
    """Temporary folders of earlier writers of `out` that were killed (kill -9 runs no
    cleanup). Called under the lock, so no live process is writing any of them."""
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


__all__ = ["FORMAT_VERSION", "cache_root", "open_prepared", "prepare_data"]
