"""A prepared data set on disk: its index, its memory-mapped shards, and loaders over them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lossreweight.data.loader import TrainLoader, val_batches
from lossreweight.data.mixture import Mixture
from lossreweight.data.shards import check_shards, file_dtype, read_index
from lossreweight.data.tokenizer import TextTokenizer, load_tokenizer
from lossreweight.errors import DataError

if TYPE_CHECKING:
    import torch

_MAX_OPEN_MAPS = 64  # memory maps kept open at once (each holds a file descriptor)


class PreparedData:
    """Token shards and their index. Open with `PreparedData.open(dir)`."""

    def __init__(self, root: Path, index: dict[str, Any]) -> None:
        self.root = root
        self.index = index
        self.domains: list[str] = list(index["domains"])
        self.seq_len: int = int(index["seq_len"])
        self.vocab_size: int = int(index["tokenizer"]["vocab_size"])
        self.eos_id: int = int(index["tokenizer"]["eos_id"])
        self.dtype = file_dtype(index["dtype"])
        self.shard_sequences: int = int(index["shard_sequences"])
        # The mixture train_loader() uses when given none: prepare_data() sets the config's.
        self.default_mixture: Mixture = "natural"
        self._maps: OrderedDict[str, np.memmap] = OrderedDict()

    @classmethod
    def open(cls, path: str | Path, *, full_check: bool = False) -> PreparedData:
        """Open prepared data, checking the index and every shard's size and checksum
        (the cheap one by default; `full_check` reads every byte)."""
        root = Path(path)
        index = read_index(root)
        check_shards(root, index, full=full_check)
        if not (root / index["tokenizer"]["dir"]).is_dir():
            raise DataError(
                f"{root}: the tokenizer folder is missing; run lossreweight prepare again"
            )
        return cls(root, index)

    # -- what the data is -------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        return str(self.index["fingerprint"])

    @property
    def tokenizer_dir(self) -> Path:
        """The tokenizer, in Hugging Face format for the 'bpe' and 'hf' kinds (loadable with
        `transformers.AutoTokenizer.from_pretrained`); a tiktoken file for 'tiktoken'. Either
        way `load_tokenizer()` reads it."""
        return self.root / self.index["tokenizer"]["dir"]

    def load_tokenizer(self) -> TextTokenizer:
        return load_tokenizer(self.tokenizer_dir)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per domain: documents, characters, tokens (both splits, end-of-text ids included),
        train_sequences, val_sequences, and the same per split."""
        return {d: dict(self.index["stats"][d]) for d in self.domains}

    @property
    def num_train_sequences(self) -> int:
        return int(self.index["num_train_sequences"])

    @property
    def num_val_sequences(self) -> int:
        return int(self.index["num_val_sequences"])

    def train_sequences(self, domain: str) -> int:
        return int(self.index["splits"]["train"][domain]["sequences"])

    def val_sequences(self, domain: str) -> int:
        return int(self.index["splits"]["val"][domain]["sequences"])

    def domain_of_train_sequence(self, i: int) -> str:
        """The domain of global training sequence i (domains own contiguous ranges)."""
        for d in self.domains:
            entry = self.index["splits"]["train"][d]
            if entry["first_sequence"] <= i < entry["first_sequence"] + entry["sequences"]:
                return d
        raise IndexError(f"training sequence {i} out of range [0, {self.num_train_sequences})")

    # -- reading ----------------------------------------------------------------------------

    def read_sequences(self, split: str, domains: np.ndarray, local: np.ndarray) -> np.ndarray:
        """Rows [n, seq_len] of token ids: sequence local[i] of domain number domains[i]."""
        out = np.empty((len(domains), self.seq_len), dtype=self.dtype)
        shard_of = local // self.shard_sequences
        for d, s in {(int(d), int(s)) for d, s in zip(domains, shard_of, strict=True)}:
            sel = (domains == d) & (shard_of == s)
            rows = self._shard_rows(split, self.domains[d], s)
            out[sel] = rows[local[sel] - s * self.shard_sequences]
        return out

    def sequence(self, split: str, domain: str, i: int) -> np.ndarray:
        """One sequence of token ids."""
        d = self.domains.index(domain)
        n = self.index["splits"][split][domain]["sequences"]
        if not 0 <= i < n:
            raise IndexError(f"{split} sequence {i} of '{domain}' out of range [0, {n})")
        return self.read_sequences(split, np.array([d]), np.array([i]))[0]

    def tokens(self, split: str, domain: str) -> np.ndarray:
        """A domain's whole token stream, tail included (copies: for inspection and tests)."""
        shards = self.index["splits"][split][domain]["shards"]
        parts = [self._map(s["file"]) for s in shards]
        return np.concatenate(parts) if parts else np.empty(0, dtype=self.dtype)

    def tokens_by_chunk(self, split: str, domain: str, chunk: int) -> Iterator[np.ndarray]:
        """A domain's whole token stream (tail included) in pieces of at most `chunk` ids."""
        for shard in self.index["splits"][split][domain]["shards"]:
            mm = np.memmap(self.root / shard["file"], dtype=self.dtype, mode="r")
            for start in range(0, mm.size, chunk):
                yield np.array(mm[start : start + chunk])
            del mm

    def verify(self) -> None:
        """Read every shard and compare its full CRC-32 with the index (DataError if not)."""
        check_shards(self.root, self.index, full=True)

    def _map(self, rel: str) -> np.memmap:
        mm = self._maps.get(rel)
        if mm is None:
            mm = np.memmap(self.root / rel, dtype=self.dtype, mode="r")
            self._maps[rel] = mm
            if len(self._maps) > _MAX_OPEN_MAPS:
                self._maps.popitem(last=False)
        else:
            self._maps.move_to_end(rel)
        return mm

    def _shard_rows(self, split: str, domain: str, shard: int) -> np.ndarray:
        info = self.index["splits"][split][domain]["shards"][shard]
        mm = self._map(info["file"])
        full = (info["tokens"] // self.seq_len) * self.seq_len
        return mm[:full].reshape(-1, self.seq_len)

    # -- loaders ----------------------------------------------------------------------------

    def train_loader(
        self,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        mixture: Mixture | None = None,
    ) -> TrainLoader:
        """An infinite, resumable iterator of {"input_ids", "domain_ids"} batches for one rank."""
        return TrainLoader(
            self,
            batch_size,
            seed=seed,
            rank=rank,
            world_size=world_size,
            mixture=self.default_mixture if mixture is None else mixture,
        )

    def val_batches(
        self,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        max_sequences_per_domain: int | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        return val_batches(
            self,
            batch_size,
            rank=rank,
            world_size=world_size,
            max_sequences_per_domain=max_sequences_per_domain,
        )

    def __repr__(self) -> str:
        return (
            f"PreparedData({str(self.root)!r}, domains={self.domains}, seq_len={self.seq_len}, "
            f"vocab_size={self.vocab_size}, train_sequences={self.num_train_sequences})"
        )
