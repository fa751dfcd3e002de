"""The unigram statistics of the training tokens: counts per domain, stored with prepared data.

The unigram entropy of the training mix is the loss of a model that knows only how often each
token occurs. A language model's loss falls below it once it uses context; before that, the
per-sample losses mostly say which domain a sample came from, not how hard it is. A burn-in
that ends by progress (`reweight.burn_in_below_unigram`) is measured against it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lossreweight.data.prepared import PreparedData

UNIGRAM_FILE = "unigram_train.npy"  # int64 [domains, vocab], domains in the index's order


def entropy_nats(counts: np.ndarray) -> float:
    """The entropy (nats) of the distribution that `counts` give (0.0 for no counts)."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    if total <= 0:
        return 0.0
    p = c[c > 0] / total
    return float(-(p * np.log(p)).sum())


def mixture_entropy(counts: np.ndarray, shares: Sequence[float]) -> float:
    """The unigram entropy of a mix that draws domain d's tokens with probability shares[d]."""
    c = np.asarray(counts, dtype=np.float64)
    totals = c.sum(axis=1, keepdims=True)
    p = np.divide(c, totals, out=np.zeros_like(c), where=totals > 0)
    mix = (np.asarray(shares, dtype=np.float64)[:, None] * p).sum(axis=0)
    return entropy_nats(mix)


def save_counts(root: Path, counts: np.ndarray) -> None:
    """Write the counts next to the shards (a plain .npy: loaded without pickle)."""
    path = root / UNIGRAM_FILE
    with open(path, "wb") as f:
        np.save(f, counts.astype(np.int64), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def unigram_counts(data: PreparedData) -> np.ndarray:
    """[domains, vocab] training-token counts: the stored file, or (data prepared before it
    was stored) one pass over the training shards."""
    path = data.root / UNIGRAM_FILE
    shape = (len(data.domains), data.vocab_size)
    if path.is_file():
        counts = np.load(path, allow_pickle=False)
        if counts.shape == shape:
            return counts
    counts = np.zeros(shape, dtype=np.int64)
    for i, d in enumerate(data.domains):
        for chunk in data.tokens_by_chunk("train", d, 1 << 22):
            counts[i] += np.bincount(chunk, minlength=data.vocab_size)[: data.vocab_size]
    return counts


def train_mix_entropy(data: PreparedData, shares: Mapping[str, float]) -> float:
    """The unigram entropy (nats) of the training mix that the loader draws (`shares`: the
    resolved mixture, domain -> probability)."""
    return mixture_entropy(unigram_counts(data), [shares.get(d, 0.0) for d in data.domains])
