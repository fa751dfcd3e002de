"""Batches for training and validation, read from memory-mapped shards.

Training: global batch g holds stream positions [g*W*B, (g+1)*W*B) (W ranks, B per rank);
rank r takes positions g*W*B + r*B ... + B. What fills each position is a pure function of
(seed, mixture, position) (sampling.py), so the loader's whole state is g.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from lossreweight.data.mixture import Mixture, resolve_mixture
from lossreweight.data.sampling import EpochOrder, MixtureOrder
from lossreweight.errors import DataError

if TYPE_CHECKING:
    import torch

STATE_VERSION = 1


class Sequences(Protocol):
    """What the loaders read: `PreparedData` (named here by its interface, so that this module
    and prepared.py do not import each other)."""

    domains: list[str]

    @property
    def num_train_sequences(self) -> int: ...

    def train_sequences(self, domain: str) -> int: ...

    def val_sequences(self, domain: str) -> int: ...

    def read_sequences(self, split: str, domains: np.ndarray, local: np.ndarray) -> np.ndarray: ...


def _check_rank(rank: int, world_size: int, batch_size: int) -> None:
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise DataError(f"rank {rank} is not in [0, world_size={world_size})")


def _to_batch(rows: np.ndarray, domains: np.ndarray) -> dict[str, torch.Tensor]:
    import torch

    return {
        "input_ids": torch.from_numpy(rows.astype(np.int64)),
        "domain_ids": torch.from_numpy(domains.astype(np.int64)),
    }


class TrainLoader:
    """An infinite, seeded, resumable iterator of training batches for one rank."""

    def __init__(
        self,
        data: Sequences,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        mixture: Mixture = "natural",
    ) -> None:
        _check_rank(rank, world_size, batch_size)
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        counts = {d: data.train_sequences(d) for d in data.domains}
        self.mixture = resolve_mixture(mixture, counts)
        if any(n == 0 and self.mixture[d] > 0 for d, n in counts.items()):
            raise DataError("a domain with a positive mixture weight has no training sequences")
        # "natural" reads exact epochs; other mixtures sample each domain at its weight.
        self._order: EpochOrder | MixtureOrder = (
            EpochOrder(list(counts.values()), seed)
            if mixture == "natural"
            else MixtureOrder(list(counts.values()), list(self.mixture.values()), seed)
        )
        self.mixture_name = mixture if isinstance(mixture, str) else "weights"
        self.batch_index = 0  # the next global batch

    def __iter__(self) -> TrainLoader:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        batch = self.batch(self.batch_index)
        self.batch_index += 1
        return batch

    def batch(self, g: int) -> dict[str, torch.Tensor]:
        """This rank's part of global batch g (does not move the loader)."""
        domains, local = self.indices(g)
        return _to_batch(self.data.read_sequences("train", domains, local), domains)

    def indices(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """(domain number, sequence number within the domain) of this rank's rows of batch g."""
        if g < 0:
            raise DataError(f"batch index must be >= 0, got {g}")
        start = g * self.batch_size * self.world_size + self.rank * self.batch_size
        return self._order.lookup(np.arange(start, start + self.batch_size))

    @property
    def samples_seen(self) -> int:
        """Samples consumed by all ranks together."""
        return self.batch_index * self.batch_size * self.world_size

    @property
    def epoch(self) -> float:
        """Passes over the training sequences so far (fractional)."""
        return self.samples_seen / max(self.data.num_train_sequences, 1)

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "batch_index": self.batch_index,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "mixture": self.mixture_name,
            "weights": dict(self.mixture),
            "num_train_sequences": self.data.num_train_sequences,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at the saved position. The settings that define the order must match."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise DataError(f"not a train-loader state of version {STATE_VERSION}: {state!r:.200}")
        for key in ("seed", "batch_size", "world_size", "num_train_sequences"):
            ours = self.state_dict()[key]
            if state.get(key) != ours:
                raise DataError(
                    f"cannot resume the data loader: the checkpoint has {key}={state.get(key)}, "
                    f"this run has {key}={ours}; resume with the same data, seed, batch size and "
                    "number of ranks"
                )
        saved = state.get("weights") or {}
        if (
            state.get("mixture") != self.mixture_name
            or set(saved) != set(self.mixture)
            or any(abs(saved[d] - w) > 1e-9 for d, w in self.mixture.items())
        ):
            raise DataError(
                "cannot resume the data loader: the checkpoint was taken with another mixture "
                f"({state.get('mixture')}: {saved}) than this run ({self.mixture_name}: "
                f"{self.mixture})"
            )
        g = state.get("batch_index")
        if not isinstance(g, int) or g < 0:
            raise DataError(f"train-loader state has an invalid batch_index {g!r}")
        self.batch_index = g


def val_batches(
    data: Sequences,
    batch_size: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    max_sequences_per_domain: int | None = None,
) -> list[dict[str, torch.Tensor]]:
    """The validation set in a fixed order: domain by domain, each capped to
    `max_sequences_per_domain` evenly spaced sequences; rank r takes every W-th sequence
    starting at r, so ranks are disjoint and together cover the whole (capped) set."""
    _check_rank(rank, world_size, batch_size)
    if max_sequences_per_domain is not None and max_sequences_per_domain < 1:
        raise DataError(f"max_sequences_per_domain must be >= 1, got {max_sequences_per_domain}")
    domains, local = [], []
    for d, name in enumerate(data.domains):
        n = data.val_sequences(name)
        cap = n if max_sequences_per_domain is None else min(n, max_sequences_per_domain)
        idx = (np.arange(cap, dtype=np.int64) * n) // max(cap, 1)
        domains.append(np.full(cap, d, dtype=np.int64))
        local.append(idx)
    all_domains = np.concatenate(domains)[rank::world_size]
    all_local = np.concatenate(local)[rank::world_size]
    batches = []
    for s in range(0, all_domains.size, batch_size):
        dom, loc = all_domains[s : s + batch_size], all_local[s : s + batch_size]
        batches.append(_to_batch(data.read_sequences("val", dom, loc), dom))
    return batches
