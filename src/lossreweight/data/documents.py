"""Documents, and the seeded rules that order, cap and split them.

Every rule here hashes with blake2b instead of `random`/numpy, so the corpus and its split are
the same bytes on every platform and library version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Split = Literal["train", "val"]


@dataclass(frozen=True)
class Document:
    """One document of one domain. `where` names its origin for error messages."""

    domain: str
    text: str
    where: str
    split: Split = "train"


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of the parts, identical across runs and platforms."""
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little")


def unit_hash(*parts: object) -> float:
    """A hash of the parts mapped to [0, 1)."""
    return stable_hash(*parts) / 2.0**64


def seeded_order(names: list[str], seed: int, domain: str) -> list[int]:
    """Indices of `names` in a seeded pseudo-random order (a shuffle by hash)."""
    return sorted(range(len(names)), key=lambda i: (stable_hash(seed, domain, names[i]), i))


def split_of(seed: int, domain: str, ordinal: int, val_fraction: float) -> Split:
    """The split of a domain's `ordinal`-th document.

    Decided from the document's position alone, so that streaming inputs never need a second
    pass: the first document is for training, the second for validation (so every domain with
    two or more documents has both), and later ones are validation with probability
    `val_fraction`.
    """
    if ordinal == 0:
        return "train"
    if ordinal == 1:
        return "val"
    return "val" if unit_hash("split", seed, domain, ordinal) < val_fraction else "train"


def truncate_at_line(text: str, max_chars: int) -> str:
    """The longest prefix of `text` of at most `max_chars` characters that ends at a line end."""
    if len(text) <= max_chars:
        return text
    cut = text.rfind("\n", 0, max_chars)
    return text[: cut + 1] if cut > 0 else text[:max_chars]


# A document listed without reading it: (name, load). Capped corpora load only what they keep.
LazyDocument = tuple[str, Callable[[], str]]
