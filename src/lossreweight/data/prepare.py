"""prepare_data: corpus -> tokenizer -> token shards + index, cached and written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lossreweight.data.config import DataConfig
from lossreweight.data.corpus import Corpus, describe_sources
from lossreweight.data.documents import Document, unit_hash
from lossreweight.data.mixture import resolve_mixture
from lossreweight.data.prepared import PreparedData
from lossreweight.data.shards import (
    FORMAT,
    FORMAT_VERSION,
    INDEX_FILE,
    SPLITS,
    StreamWriter,
    dtype_for_vocab,
    file_dtype,
    write_index,
)
from lossreweight.data.tokenizer import TextTokenizer, import_hf, import_tiktoken, train_bpe
from lossreweight.errors import DataError

# Documents are tokenized in batches of about this many characters: enough for the
# tokenizer's threads, small enough to bound memory whatever the input size.
_BATCH_CHARS = 2 << 20
_BATCH_DOCS = 1024


def cache_root(cfg: DataConfig) -> Path:
    """cfg.cache_dir, else $LOSSREWEIGHT_CACHE, else ~/.cache/lossreweight."""
    root = cfg.cache_dir or os.environ.get("LOSSREWEIGHT_CACHE") or "~/.cache/lossreweight"
    return Path(root).expanduser()


def prepare_data(
    cfg: DataConfig, out_dir: str | Path | None = None, *, progress: bool = True
) -> PreparedData:
    """Tokenize the configured corpus into shards in `out_dir` (default: a cache folder keyed
    by the settings and source versions) and open it.

    Idempotent: when the folder already holds complete data for the same settings it is
    opened without re-tokenizing. Written into a temporary folder that is renamed into place
    at the end, so an interrupted run never leaves data that looks complete.
    """
    corpus = Corpus.from_config(cfg)
    settings = _settings(cfg, corpus)
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    out = Path(out_dir) if out_dir is not None else cache_root(cfg) / "data" / fingerprint[:16]
    data = _reuse(out, fingerprint)
    if data is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            _build(cfg, corpus, tmp, settings, fingerprint, progress)
            _publish(tmp, out, fingerprint)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        data = PreparedData.open(out)
    # Fail now, not at the first batch, when the mixture does not fit the data's domains.
    resolve_mixture(cfg.mixture, {d: data.train_sequences(d) for d in data.domains})
    data.default_mixture = cfg.mixture
    return data


def _settings(cfg: DataConfig, corpus: Corpus) -> dict[str, Any]:
    """Everything the prepared bytes depend on (not where they are cached, nor the mixture,
    which only the loader uses)."""
    tok_source = None
    if cfg.tokenizer.path:
        p = Path(cfg.tokenizer.path).expanduser()
        files = sorted(p.iterdir()) if p.is_dir() else [p] if p.exists() else []
        tok_source = [
            [str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()
        ]
    return {
        "format_version": FORMAT_VERSION,
        "config": cfg.model_dump(mode="json", exclude={"cache_dir", "mixture"}),
        "sources": corpus.identity(),
        "tokenizer_source": tok_source,
    }


def _reuse(out: Path, fingerprint: str) -> PreparedData | None:
    """Complete data for these settings already in `out`, or None. Refuses to touch a folder
    that is not ours."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise DataError(f"{out} exists and is not a folder; choose another output folder")
    index_path = out / INDEX_FILE
    if not index_path.is_file():
        if any(out.iterdir()):
            raise DataError(
                f"{out} is not empty and holds no prepared data; choose another output folder "
                "or empty it"
            )
        return None
    try:
        index = json.loads(index_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a broken index of ours: rebuild
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DataError(
            f"{out} holds an index.json that is not lossreweight data; choose another folder"
        )
    if index.get("fingerprint") != fingerprint or index.get("format_version") != FORMAT_VERSION:
        return None
    try:
        return PreparedData.open(out)
    except DataError:
        return None  # damaged: rebuild


def _publish(tmp: Path, out: Path, fingerprint: str) -> None:
    """Move the finished folder into place, replacing stale data of ours."""
    if _reuse(out, fingerprint) is not None:
        return  # another process (e.g. another rank) published the same data meanwhile
    stale = None
    if out.exists():
        if any(out.iterdir()):
            stale = out.parent / f".{out.name}.stale-{os.getpid()}-{secrets.token_hex(4)}"
            os.rename(out, stale)
        else:
            out.rmdir()
    try:
        os.rename(tmp, out)
    except OSError:
        # Another process (e.g. another rank) published first: fine if it is the same data.
        if _reuse(out, fingerprint) is None:
            raise
    finally:
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)


def _make_tokenizer(cfg: DataConfig, corpus: Corpus, out: Path, progress: bool) -> TextTokenizer:
    tc = cfg.tokenizer
    if tc.kind == "hf":
        return import_hf(tc.path or "", out)
    if tc.kind == "tiktoken":
        return import_tiktoken(tc.path or "", tc.pattern, out)
    return train_bpe(_bpe_texts(cfg, corpus, progress), tc.vocab_size, out)


def _bpe_texts(cfg: DataConfig, corpus: Corpus, progress: bool) -> Iterator[str]:
    """Training-split text for the BPE: all of it, or an even sample of about
    `max_train_chars` characters spread over the whole corpus."""
    budget = cfg.tokenizer.max_train_chars
    embedded = sum(len(d.text) for d in corpus.embedded_documents())
    total = embedded + corpus.file_bytes()
    keep = min(1.0, budget / max(total, 1))
    with _progress_bar(progress, total, "reading text for the tokenizer") as bar:
        for doc in corpus.documents(advance=bar.update):
            if budget <= 0:
                return
            if doc.split != "train" or (keep < 1 and unit_hash("bpe", cfg.seed, doc.where) >= keep):
                continue
            text = doc.text[:budget]
            budget -= len(text)
            yield text


class _Stats:
    def __init__(self) -> None:
        self.per_domain: dict[str, dict[str, Any]] = {}

    def add(self, doc: Document, tokens: int) -> None:
        s = self.per_domain.setdefault(
            doc.domain,
            {
                f"{split}_{what}": 0
                for split in SPLITS
                for what in ("documents", "characters", "tokens")
            }
            | {"where": doc.where},
        )
        s[f"{doc.split}_documents"] += 1
        s[f"{doc.split}_characters"] += len(doc.text)
        s[f"{doc.split}_tokens"] += tokens


def _build(
    cfg: DataConfig,
    corpus: Corpus,
    root: Path,
    settings: dict[str, Any],
    fingerprint: str,
    progress: bool,
) -> None:
    tokenizer = _make_tokenizer(cfg, corpus, root / "tokenizer", progress)
    dtype_name = dtype_for_vocab(tokenizer.vocab_size)
    dtype = file_dtype(dtype_name)
    shard_sequences = max(1, cfg.shard_size_tokens // cfg.seq_len)
    writers: dict[tuple[str, str], StreamWriter] = {}
    numbers: dict[str, int] = {}
    stats = _Stats()

    def writer(split: str, domain: str) -> StreamWriter:
        key = (split, domain)
        if key not in writers:
            number = numbers.setdefault(domain, len(numbers))
            writers[key] = StreamWriter(root, split, number, dtype, shard_sequences * cfg.seq_len)
        return writers[key]

    embedded = sum(len(d.text) for d in corpus.embedded_documents())
    with _progress_bar(progress, embedded + corpus.file_bytes(), "tokenizing") as bar:
        for batch in _batches(corpus.documents(advance=bar.update)):
            for doc, ids in zip(
                batch, tokenizer.encode_batch([d.text for d in batch]), strict=True
            ):
                arr = np.empty(len(ids) + 1, dtype=dtype)
                arr[:-1] = ids
                arr[-1] = tokenizer.eos_id
                writer(doc.split, doc.domain).write(arr)
                stats.add(doc, arr.size)
    shards = {key: w.close() for key, w in writers.items()}
    if not stats.per_domain:
        raise DataError(
            f"empty corpus: no document with text in {describe_sources(cfg)}"
            + (f" for domains {', '.join(cfg.domains)}" if cfg.domains else "")
        )
    domains = sorted(stats.per_domain)
    _check_domains(cfg, stats.per_domain)

    splits: dict[str, dict[str, Any]] = {s: {} for s in SPLITS}
    totals = dict.fromkeys(SPLITS, 0)
    table: dict[str, dict[str, int]] = {}
    for d in domains:
        s = stats.per_domain[d]
        for split in SPLITS:
            n = s[f"{split}_tokens"] // cfg.seq_len
            splits[split][d] = {
                "first_sequence": totals[split],
                "sequences": n,
                "tokens": s[f"{split}_tokens"],
                "shards": [x.to_json() for x in shards.get((split, d), [])],
            }
            totals[split] += n
        table[d] = {
            "documents": s["train_documents"] + s["val_documents"],
            "characters": s["train_characters"] + s["val_characters"],
            "tokens": s["train_tokens"] + s["val_tokens"],
            "train_sequences": splits["train"][d]["sequences"],
            "val_sequences": splits["val"][d]["sequences"],
        } | {k: v for k, v in s.items() if k != "where"}
    write_index(
        root,
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_by": f"lossreweight {_version()}",
            "fingerprint": fingerprint,
            "settings": settings,
            "tokenizer": {"dir": "tokenizer"} | tokenizer.info(),
            "dtype": dtype_name,
            "seq_len": cfg.seq_len,
            "shard_sequences": shard_sequences,
            "domains": domains,
            "stats": table,
            "num_train_sequences": totals["train"],
            "num_val_sequences": totals["val"],
            "splits": splits,
        },
    )


def _check_domains(cfg: DataConfig, per_domain: dict[str, dict[str, Any]]) -> None:
    """Every domain needs training and validation documents, each at least one sequence long."""
    for d, s in sorted(per_domain.items()):
        if s["val_documents"] == 0 or s["train_documents"] == 0:
            raise DataError(
                f"domain '{d}' has a single document ({s['where']}), so none is left for "
                f"{'validation' if s['val_documents'] == 0 else 'training'}: give every domain "
                "at least 2 documents (e.g. a .jsonl with one document per line, or several files)"
            )
        for split in SPLITS:
            if s[f"{split}_tokens"] < cfg.seq_len:
                raise DataError(
                    f"domain '{d}': its {split} documents hold {s[f'{split}_tokens']} tokens, fewer "
                    f"than one sequence (seq_len={cfg.seq_len}); add text to this domain, lower "
                    "seq_len" + (", or raise val_fraction" if split == "val" else "")
                )


def _batches(docs: Iterable[Document]) -> Iterator[list[Document]]:
    batch: list[Document] = []
    chars = 0
    for doc in docs:
        batch.append(doc)
        chars += len(doc.text)
        if chars >= _BATCH_CHARS or len(batch) >= _BATCH_DOCS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _progress_bar(enabled: bool, total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        disable=not enabled,
        leave=False,
        mininterval=0.5,
    )


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("lossreweight")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
