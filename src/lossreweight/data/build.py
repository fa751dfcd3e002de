"""Building prepared data: the tokenizer, then the token shards and the index, in a folder."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lossreweight.data.corpus import Corpus, describe_sources
from lossreweight.data.data_config import DataConfig
from lossreweight.data.documents import Document, unit_hash
from lossreweight.data.encode import Encoder
from lossreweight.data.shards import (
    FORMAT,
    FORMAT_VERSION,
    SPLITS,
    StreamWriter,
    dtype_for_vocab,
    file_dtype,
    write_index,
)
from lossreweight.data.tokenizer import TextTokenizer, import_hf, import_tiktoken, train_bpe
from lossreweight.data.unigram import UNIGRAM_FILE, entropy_nats, save_counts
from lossreweight.errors import DataError

# Documents are grouped in batches of about this many characters: enough for the
# tokenizer's threads, small enough to bound memory whatever the input size.
_BATCH_CHARS = 2 << 20
_BATCH_DOCS = 1024


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
    with progress_bar(progress, total, "reading text for the tokenizer") as bar:
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


def build(
    cfg: DataConfig,
    corpus: Corpus,
    root: Path,
    settings: dict[str, Any],
    fingerprint: str,
    progress: bool,
    workers: int,
) -> None:
    """Tokenize the corpus into shards and an index in `root` (a fresh, empty folder)."""
    tokenizer = _make_tokenizer(cfg, corpus, root / "tokenizer", progress)
    dtype_name = dtype_for_vocab(tokenizer.vocab_size)
    dtype = file_dtype(dtype_name)
    shard_sequences = max(1, cfg.shard_size_tokens // cfg.seq_len)
    writers: dict[tuple[str, str], StreamWriter] = {}
    numbers: dict[str, int] = {}
    stats = _Stats()
    # Training-token counts per domain: the unigram entropy says where a model stands after
    # it has learned word frequencies (a progress-based burn-in ends below it).
    unigram: dict[str, np.ndarray] = {}

    def writer(split: str, domain: str) -> StreamWriter:
        key = (split, domain)
        if key not in writers:
            number = numbers.setdefault(domain, len(numbers))
            writers[key] = StreamWriter(root, split, number, dtype, shard_sequences * cfg.seq_len)
        return writers[key]

    embedded = sum(len(d.text) for d in corpus.embedded_documents())
    total = embedded + corpus.file_bytes()
    encoder = Encoder(tokenizer, root / "tokenizer", dtype, workers, total)
    with progress_bar(progress, total, "tokenizing") as bar:
        for batch, arrays in encoder.map(_batches(corpus.documents(advance=bar.update))):
            for doc, arr in zip(batch, arrays, strict=True):
                writer(doc.split, doc.domain).write(arr)
                stats.add(doc, arr.size)
                if doc.split == "train" and arr.size:
                    counts = unigram.setdefault(
                        doc.domain, np.zeros(tokenizer.vocab_size, dtype=np.int64)
                    )
                    counts += np.bincount(arr, minlength=tokenizer.vocab_size)[: counts.size]
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
    zero = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    save_counts(root, np.stack([unigram.get(d, zero) for d in domains]))
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
            "unigram": {
                "file": UNIGRAM_FILE,
                "train_entropy_by_domain": {d: entropy_nats(unigram.get(d, zero)) for d in domains},
                "train_entropy": entropy_nats(sum(unigram.values(), zero)),
            },
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
                    f"domain '{d}': its {split} documents hold {s[f'{split}_tokens']} tokens, "
                    f"fewer than one sequence (seq_len={cfg.seq_len}); add text to this domain, "
                    "lower seq_len" + (", or raise val_fraction" if split == "val" else "")
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


def progress_bar(enabled: bool, total: int, desc: str) -> Any:
    """A tqdm bar in bytes, shown only on a terminal (else a no-op with the same interface):
    a log file gets no bar updates."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        disable=not (enabled and sys.stderr.isatty()),
        leave=False,
        mininterval=0.5,
    )


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("lossreweight")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
