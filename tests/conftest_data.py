"""Helpers shared by the data tests (tests/test_data_*.py): a small embedded corpus that
prepares in about a second, cached once per test session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lossreweight.data import Corpus, DataConfig, Document, PreparedData, prepare_data

# Small enough for a fast suite, large enough that every domain has several documents in both
# splits and a few dozen sequences.
SMALL = {"max_chars_per_domain": 40_000, "seq_len": 32, "tokenizer": {"vocab_size": 512}}
_prepared: dict[Path, PreparedData] = {}
_docs: list[Document] = []


def small_config(cache: Path, **overrides: Any) -> DataConfig:
    return DataConfig(**(SMALL | {"cache_dir": str(cache)} | overrides))


def small_data(cache: Path) -> PreparedData:
    """The small embedded data set, prepared once per cache folder."""
    if cache not in _prepared:
        _prepared[cache] = prepare_data(small_config(cache), progress=False)
    return _prepared[cache]


def small_docs() -> list[Document]:
    """The small corpus's documents (what `small_data` tokenized), built once."""
    if not _docs:
        _docs.extend(Corpus.from_config(DataConfig(**SMALL)).embedded_documents())
    return _docs


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def sentences(n: int, topic: str) -> list[str]:
    """n distinct, deterministic short documents about a topic."""
    return [
        f"Document {i} about {topic}. " + " ".join(f"{topic}{(i * 7 + j) % 13}" for j in range(40))
        for i in range(n)
    ]
