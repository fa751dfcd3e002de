"""What it costs to make the data fingerprint cover the bytes the trainer reads (issue 19).

The fingerprint a run saves in data.json (`rundir.data_fingerprint`) is built from the index's
per-shard token counts and full CRC-32s. `train` and `eval` now first check those CRC-32s
against the shards' bytes (`PreparedData.verify`: one sequential read of every shard), so a
shard changed after `prepare` cannot pass as the data the run names. This measures that read
on GB of token shards written by the real shard writer, against the checksum-only fingerprint
and against one plain read of the same bytes (what the trainer itself reads per epoch).
Files are fresh in the page cache (written just before), so the times are CPU-bound: the
cost of CRC-32 over memory; a cold read adds the disk's time to both.

    .venv/bin/python benchmarks/bench_fingerprint.py [--gb 1.0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from lossreweight.data.shards import SPLITS, StreamWriter, check_shards, file_dtype
from lossreweight.rundir import data_fingerprint

SHARD_TOKENS = 64 << 20  # 128 MiB of uint16 ids per shard


def write_shards(root: Path, gb: float) -> dict:
    """`gb` GB of uint16 ids: two domains, train and val (90/10), and their index."""
    dtype = file_dtype("uint16")
    total = int(gb * 1e9) // dtype.itemsize
    rng = np.random.default_rng(0)
    splits: dict = {s: {} for s in SPLITS}
    for number, domain in enumerate(("web", "code")):
        for split, share in (("train", 0.9), ("val", 0.1)):
            w = StreamWriter(root, split, number, dtype, SHARD_TOKENS)
            left = int(total * share / 2)
            while left:
                n = min(left, 16 << 20)
                w.write(rng.integers(0, 50_000, n, dtype=np.uint16))
                left -= n
            splits[split][domain] = {"shards": [s.to_json() for s in w.close()]}
    return {"seq_len": 512, "dtype": "uint16", "domains": ["web", "code"], "splits": splits}


def plain_read(root: Path) -> int:
    n = 0
    for f in sorted(root.rglob("*.bin")):
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 24):
                n += len(chunk)
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fingerprint-") as tmp:
        root = Path(tmp)
        index = write_shards(root, args.gb)
        nbytes = sum(f.stat().st_size for f in root.rglob("*.bin"))
        stored, verified, read = [], [], []
        for _ in range(args.rounds):  # interleaved, median of each
            t = time.perf_counter()
            data_fingerprint(index, None)
            stored.append(time.perf_counter() - t)
            t = time.perf_counter()
            check_shards(root, index, full=True)
            data_fingerprint(index, None)
            verified.append(time.perf_counter() - t)
            t = time.perf_counter()
            plain_read(root)
            read.append(time.perf_counter() - t)
    s, v, r = (statistics.median(x) for x in (stored, verified, read))
    files = sum(len(e["shards"]) for split in index["splits"].values() for e in split.values())
    print(f"shards: {nbytes / 1e9:.2f} GB in {files} files")
    print(f"fingerprint from stored checksums: {s * 1e3:.2f} ms")
    print(
        f"fingerprint over the bytes (CRC-32 check first): {v:.3f} s ({nbytes / v / 1e9:.2f} GB/s)"
    )
    print(f"one plain read of the same bytes: {r:.3f} s ({nbytes / r / 1e9:.2f} GB/s)")
    print(f"ratio verified fingerprint / plain read: {v / r:.2f}x")


if __name__ == "__main__":
    main()
