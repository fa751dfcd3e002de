"""Joining prepared folders into one: how a corpus larger than one machine is prepared.

Each node prepares its share of the files with the same tokenizer and seq_len; `join` then
concatenates, per (split, domain), the parts' token streams into new shards and writes one
index. The parts are only read.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from lossreweight.data.build import progress_bar
from lossreweight.data.outdir import check_replaceable, move_into, owned_files
from lossreweight.data.prepare import _remove_if_only_lock
from lossreweight.data.prepared import PreparedData
from lossreweight.data.shards import FORMAT, FORMAT_VERSION, SPLITS, StreamWriter, write_index
from lossreweight.data.tokenizer import INFO_FILE
from lossreweight.errors import DataError
from lossreweight.locking import DirectoryLock
from lossreweight.safe_files import WorkDir, remove_stale_work_dirs

_CHUNK_TOKENS = 1 << 24


def join_prepared(
    parts: list[str | Path], out: str | Path, *, progress: bool = False
) -> PreparedData:
    """Write the union of the prepared folders `parts` (same tokenizer, seq_len and dtype)
    into the new folder `out`, and open it."""
    if len(parts) < 2:
        raise DataError("--join needs at least two prepared folders")
    datas = [PreparedData.open(p) for p in parts]
    _check_distinct(parts, datas)
    _check_compatible(datas)
    out = Path(out)
    roots = {d.root.resolve() for d in datas}
    if out.resolve() in roots:
        raise DataError(f"--out {out} is one of the folders to join; give a new folder")
    settings = {"joined": [d.index.get("settings") for d in datas]}
    if (out / "index.json").exists():
        raise DataError(f"{out} already holds prepared data; give a new folder for the join")
    check_replaceable(out, settings, replace=False)
    created = not out.exists()
    partials = f".{out.name}.partial-"
    try:
        with DirectoryLock(out, what="prepared-data directory"):
            remove_stale_work_dirs(out.parent, partials)
            work = None
            try:  # not `with`: a signal at __enter__'s first line would skip __exit__
                work = WorkDir(out.parent, partials)
                _write(datas, work.path, settings, progress)
                move_into(work.path, out, owned_files(out) or set())
            finally:
                if work is not None:
                    work.close()
    finally:
        if created and out.is_dir() and not (out / "index.json").exists():
            _remove_if_only_lock(out, remove_folder=True)
    return PreparedData.open(out)


def _check_distinct(parts: list[str | Path], datas: list[PreparedData]) -> None:
    """A folder given twice (under any path), or two folders of the same shards (a copy),
    would double that data in the join without a word: refused."""
    seen: dict[Any, str | Path] = {}
    for part, data in zip(parts, datas, strict=True):
        for key, how in (
            (data.root.resolve(), "names the same folder twice"),
            (
                json.dumps(data.index["splits"], sort_keys=True),
                "names two folders of the same data",
            ),
        ):
            if key in seen:
                raise DataError(
                    f"--join {how} ({seen[key]} and {part}): its data would be in the join "
                    "twice; give each prepared part once"
                )
            seen[key] = part


def _check_compatible(datas: list[PreparedData]) -> None:
    first = datas[0]
    tok = _tokenizer_hash(first)
    for d in datas[1:]:
        for what, a, b in (
            ("seq_len", first.seq_len, d.seq_len),
            ("dtype", first.index["dtype"], d.index["dtype"]),
            ("tokenizer", tok, _tokenizer_hash(d)),
        ):
            if a != b:
                raise DataError(
                    f"cannot join {first.root} and {d.root}: their {what} differs; prepare every "
                    "part with the same tokenizer (tokenizer.kind=hf with one tokenizer folder) "
                    "and seq_len"
                )


def _tokenizer_hash(data: PreparedData) -> str:
    """The tokenizer's files (not its info file, which also records how it was made: a
    BPE trained here and the same folder imported as 'hf' are one tokenizer) and its ids."""
    h = hashlib.sha256(f"{data.vocab_size}:{data.eos_id}".encode())
    for f in sorted(data.tokenizer_dir.iterdir()):
        if f.is_file() and f.name != INFO_FILE:
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _write(datas: list[PreparedData], root: Path, settings: dict[str, Any], progress: bool) -> None:
    first = datas[0]
    shutil.copytree(first.tokenizer_dir, root / "tokenizer")
    domains = sorted({d for data in datas for d in data.domains})
    seq_len, shard_sequences = first.seq_len, first.shard_sequences
    splits: dict[str, dict[str, Any]] = {s: {} for s in SPLITS}
    totals = dict.fromkeys(SPLITS, 0)
    total_bytes = sum(f.stat().st_size for d in datas for f in d.root.glob("*/*.bin"))
    with progress_bar(progress, total_bytes, "joining") as bar:
        for number, domain in enumerate(domains):
            for split in SPLITS:
                writer = StreamWriter(root, split, number, first.dtype, shard_sequences * seq_len)
                for data in datas:
                    if domain not in data.domains:
                        continue
                    stream = data.tokens_by_chunk(split, domain, _CHUNK_TOKENS)
                    for chunk in stream:
                        writer.write(chunk)
                        bar.update(chunk.nbytes)
                shards = writer.close()
                n = writer.tokens // seq_len
                splits[split][domain] = {
                    "first_sequence": totals[split],
                    "sequences": n,
                    "tokens": writer.tokens,
                    "shards": [s.to_json() for s in shards],
                }
                totals[split] += n
    stats: dict[str, dict[str, int]] = {}
    for domain in domains:
        summed: dict[str, int] = {}
        for data in datas:
            for key, value in data.index["stats"].get(domain, {}).items():
                if isinstance(value, int):
                    summed[key] = summed.get(key, 0) + value
        summed["train_sequences"] = splits["train"][domain]["sequences"]
        summed["val_sequences"] = splits["val"][domain]["sequences"]
        stats[domain] = summed
    fingerprint = hashlib.sha256(
        ("join:" + ",".join(d.fingerprint for d in datas)).encode()
    ).hexdigest()
    write_index(
        root,
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_by": first.index.get("created_by", "lossreweight"),
            "fingerprint": fingerprint,
            "settings": settings,
            "joined_from": [str(d.root) for d in datas],
            "tokenizer": first.index["tokenizer"],
            "dtype": first.index["dtype"],
            "seq_len": seq_len,
            "shard_sequences": shard_sequences,
            "domains": domains,
            "stats": stats,
            "num_train_sequences": totals["train"],
            "num_val_sequences": totals["val"],
            "splits": splits,
        },
    )
