"""The training order: which sequence fills each slot of the infinite sample stream.

The order is a pure function of (seed, mixture, position), computed in O(batch) time and
memory for any position: a resumed run, or any rank, jumps straight to its slots.

Natural mixture (`EpochOrder`): exact epochs. Position p is sequence perm_e(p mod N) of the
N training sequences (all domains numbered one after another), e = p // N: every sequence
once per epoch, each epoch in a new seeded order.

Any other mixture (`MixtureOrder`):
- Slots come in rounds of `ROUND` slots. In every round each domain gets a fixed count of
  slots, proportional to its mixture weight, placed by a seeded permutation of the round.
- The k-th slot of domain d (over all rounds) takes sequence perm_{d,e}(k mod n_d), where
  e = k // n_d is the domain's epoch and perm_{d,e} a seeded permutation of its n_d
  sequences: each domain is read without replacement, epoch after epoch.
- Permutations are Feistel networks over the index bits (with cycle walking), so they need
  no O(n) table and no random-number library whose stream could change between versions.
"""

from __future__ import annotations

import numpy as np

from lossreweight.data.documents import stable_hash

ROUND = 1 << 16  # slots per round: weights are honoured to 1/65536
_FEISTEL_ROUNDS = 4
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fast, well-mixed 64-bit hash (uint64 arithmetic wraps)."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def permute(index: np.ndarray, n: int, key: int) -> np.ndarray:
    """Image of `index` (values in [0, n)) under a keyed pseudo-random permutation of [0, n)."""
    if n <= 0:
        raise ValueError("cannot permute an empty range")
    x = np.asarray(index, dtype=np.uint64)
    if n == 1:
        return np.zeros_like(x, dtype=np.int64)
    half = max(1, ((n - 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half) - 1)
    keys = [np.uint64(stable_hash("feistel", key, r)) for r in range(_FEISTEL_ROUNDS)]

    def encrypt(v: np.ndarray) -> np.ndarray:
        left, right = v >> np.uint64(half), v & mask
        for k in keys:
            left, right = right, left ^ (_mix(right ^ k) & mask)
        return (left << np.uint64(half)) | right

    x = encrypt(x)
    # Cycle walking: values that land outside [0, n) are encrypted again until inside.
    out = x >= np.uint64(n)
    while out.any():
        x[out] = encrypt(x[out])
        out = x >= np.uint64(n)
    return x.astype(np.int64)


def round_counts(weights: list[float]) -> np.ndarray:
    """Slots per round for each domain: weights apportioned by largest remainder, and at least
    one slot for every domain with a positive weight."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    exact = w * ROUND
    counts = np.floor(exact).astype(np.int64)
    counts[(w > 0) & (counts == 0)] = 1
    remainder = ROUND - counts.sum()
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    for i in order:
        if remainder == 0:
            break
        if remainder > 0 and w[i] > 0:
            counts[i] += 1
            remainder -= 1
    while remainder < 0:  # forced minimum slots overshot: take them from the largest
        i = int(np.argmax(counts))
        counts[i] -= 1
        remainder += 1
    return counts


class MixtureOrder:
    """Maps stream positions to (domain number, sequence number within the domain)."""

    def __init__(self, sequences: list[int], weights: list[float], seed: int) -> None:
        if any(w > 0 and n == 0 for n, w in zip(sequences, weights, strict=True)):
            raise ValueError("a domain with a positive weight has no sequences")
        self.sequences = np.asarray(sequences, dtype=np.int64)
        self.counts = round_counts(weights)
        self.seed = seed
        self._labels = np.repeat(np.arange(len(sequences)), self.counts)
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None

    def _round(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Domain of each slot of round k, and how many slots of that domain precede it."""
        if self._cached is None or self._cached[0] != k:
            slots = permute(np.arange(ROUND), ROUND, stable_hash("round", self.seed, k))
            domain = self._labels[slots]
            order = np.argsort(domain, kind="stable")
            starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
            rank = np.empty(ROUND, dtype=np.int64)
            rank[order] = np.arange(ROUND) - starts[domain[order]]
            self._cached = (k, domain, rank)
        return self._cached[1], self._cached[2]

    def lookup(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        positions = np.asarray(positions, dtype=np.int64)
        domains = np.empty(positions.shape, dtype=np.int64)
        ordinals = np.empty(positions.shape, dtype=np.int64)
        rounds = positions // ROUND
        for k in np.unique(rounds):
            sel = rounds == k
            dom, rank = self._round(int(k))
            slots = positions[sel] % ROUND
            domains[sel] = dom[slots]
            ordinals[sel] = int(k) * self.counts[dom[slots]] + rank[slots]
        n = self.sequences[domains]
        epochs, within = ordinals // n, ordinals % n
        local = np.empty(positions.shape, dtype=np.int64)
        for d, e in {(int(d), int(e)) for d, e in zip(domains, epochs, strict=True)}:
            sel = (domains == d) & (epochs == e)
            local[sel] = permute(
                within[sel], int(self.sequences[d]), stable_hash("epoch", self.seed, d, e)
            )
        return domains, local


class EpochOrder:
    """Exact epochs over all sequences, for the natural mixture."""

    def __init__(self, sequences: list[int], seed: int) -> None:
        self.sequences = np.asarray(sequences, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sequences)])
        self.total = int(self.starts[-1])
        if self.total == 0:
            raise ValueError("no sequences to sample")
        self.seed = seed

    def lookup(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        positions = np.asarray(positions, dtype=np.int64)
        epochs, within = positions // self.total, positions % self.total
        index = np.empty(positions.shape, dtype=np.int64)
        for e in np.unique(epochs):
            sel = epochs == e
            index[sel] = permute(within[sel], self.total, stable_hash("epoch", self.seed, int(e)))
        domains = np.searchsorted(self.starts, index, side="right") - 1
        return domains, index - self.starts[domains]
