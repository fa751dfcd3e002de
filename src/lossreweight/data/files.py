"""The user's own sources: which files an entry of `data.sources` stands for, and the domain
their documents get when a record does not name one.

Supported: text files, JSON lines (`.jsonl`, `.jsonl.gz`, `.jsonl.zst`: SlimPajama's chunks),
`.parquet` (FineWeb's shards) and folders written by Hugging Face `datasets`' `save_to_disk`
(a `Dataset` or a `DatasetDict`). The readers are in readers.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from lossreweight.errors import DataError

TEXT_SUFFIXES = (".txt", ".md", ".py", ".rst", ".text")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.gz", ".json.zst")
PARQUET_SUFFIXES = (".parquet",)
ARROW_SUFFIXES = (".arrow",)
SUPPORTED = TEXT_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES + ARROW_SUFFIXES

_DOMAIN_PREFIX = re.compile(r"^([A-Za-z0-9_.\-]+)=(.+)$")
# What `Dataset.save_to_disk` and `DatasetDict.save_to_disk` write beside the arrow files.
HF_DATASET_STATE = "state.json"
HF_DATASET_DICT = "dataset_dict.json"


@dataclass(frozen=True)
class FileSource:
    """One entry of `sources`: a path, and the domain its documents get unless they name one."""

    path: Path
    domain: str | None  # from "DOMAIN=PATH"; None: derived from the path

    @property
    def files(self) -> list[Path]:
        return list_files(self.path)

    def default_domain(self, file: Path) -> str:
        if self.domain is not None:
            return self.domain
        if self.path.is_dir():
            if is_hf_dataset(self.path):
                return self.path.resolve().name  # a DatasetDict's splits are not domains
            rel = file.relative_to(self.path)
            # A folder's subfolders are its domains; its own files take the folder's name.
            return rel.parts[0] if len(rel.parts) > 1 else self.path.resolve().name
        return _stem(file)


def parse_source(entry: str) -> FileSource:
    """'DOMAIN=PATH' or 'PATH'; the path must exist."""
    domain, raw = None, entry
    m = _DOMAIN_PREFIX.match(entry)
    if m and not Path(entry).exists():
        domain, raw = m.group(1), m.group(2)
    path = Path(raw).expanduser()
    if not path.exists():
        raise DataError(f"source not found: {path} (fix the path in data.sources, or remove it)")
    if path.is_file() and not path.name.endswith(SUPPORTED):
        raise DataError(f"source {path}: unsupported file type (supported: {', '.join(SUPPORTED)})")
    return FileSource(path=path, domain=domain)


def is_hf_dataset(path: Path) -> bool:
    return (path / HF_DATASET_STATE).is_file() or (path / HF_DATASET_DICT).is_file()


def list_files(path: Path) -> list[Path]:
    """The supported files of a source, in reading order; hidden files and folders skipped."""
    if path.is_file():
        return [path]
    if is_hf_dataset(path):
        return hf_dataset_files(path)
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.name.endswith(SUPPORTED)
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise DataError(
            f"source folder {path} has no supported files (looked for {', '.join(SUPPORTED)})"
        )
    return files


def hf_dataset_files(path: Path) -> list[Path]:
    """The arrow files of a `save_to_disk` folder in the dataset's row order; a DatasetDict's
    splits in the order its dataset_dict.json lists them."""
    if (path / HF_DATASET_DICT).is_file():
        splits = _json(path / HF_DATASET_DICT).get("splits")
        if not isinstance(splits, list) or not splits:
            raise DataError(f"{path / HF_DATASET_DICT}: no 'splits' list; re-save the dataset")
        return [f for split in splits for f in hf_dataset_files(path / str(split))]
    state = _json(path / HF_DATASET_STATE)
    entries = state.get("_data_files")
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path / HF_DATASET_STATE}: no '_data_files' list; re-save the dataset")
    files = []
    for entry in entries:
        name = entry.get("filename") if isinstance(entry, dict) else None
        f = path / str(name)
        if not name or not f.is_file():
            raise DataError(
                f"{path}: the data file {name!r} listed in {HF_DATASET_STATE} is missing; "
                "copy the whole dataset folder again"
            )
        files.append(f)
    return files


def _json(file: Path) -> dict:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{file}: unreadable ({exc}); re-save the dataset") from None
    if not isinstance(value, dict):
        raise DataError(f"{file}: not a JSON object; re-save the dataset")
    return value


def _stem(file: Path) -> str:
    name = file.name
    for suffix in SUPPORTED:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return file.stem
