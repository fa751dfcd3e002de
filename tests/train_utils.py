"""A tiny run config shared by the training tests (seconds per run on one CPU core)."""

from __future__ import annotations

from typing import Any

TINY_OVERRIDES = [
    "data.max_chars_per_domain=20000",
    "data.tokenizer.vocab_size=512",
    "data.seq_len=32",
    "model.dim=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "model.multiple_of=32",
    "model.max_seq_len=32",
    "train.batch_size=4",
    "train.max_steps=6",
    "train.lr_warmup_steps=2",
    "train.threads=1",
    "eval.every=3",
    "eval.batch_size=16",
    "eval.max_sequences_per_domain=8",
    "log.every=1",
    "log.progress=false",
    "log.tensorboard=false",
    "checkpoint.every=3",
]

# Fields of a metrics record that depend on wall-clock time.
TIMING_KEYS = {"train/tokens_per_s", "train/mfu"}


def deterministic(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]
