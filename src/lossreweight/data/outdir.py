"""The output folder of a preparation: is it reusable, may it be replaced, and moving a
finished build into it. Data prepared with other settings is the user's: it is never
replaced without being asked, and the error names what differs. Replacing removes only the
files an earlier prepare listed as its own (`PREPARED_FILES`, see lossreweight.safe_files)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from lossreweight.data.corpus import Corpus
from lossreweight.data.data_config import DataConfig
from lossreweight.data.prepared import PreparedData
from lossreweight.data.shards import FORMAT, FORMAT_VERSION, INDEX_FILE
from lossreweight.data.unigram import UNIGRAM_FILE
from lossreweight.errors import DataError
from lossreweight.locking import LOCK_FILE
from lossreweight.safe_files import (
    WORK_MARKER,
    list_files,
    read_manifest,
    real_dirs,
    remove_listed,
    write_manifest,
)

# The files prepare wrote into an output folder: replacing the data removes those only.
PREPARED_FILES = ".prepared-files.json"

# Settings that only say where data is or how it is read, not what it holds.
_NOT_IN_FINGERPRINT = {"cache_dir", "mixture", "prepared"}


def settings_of(cfg: DataConfig, corpus: Corpus) -> dict[str, Any]:
    """Everything the prepared bytes depend on (not where they are cached, nor the mixture,
    which only the loader uses)."""
    tok_source = None
    if cfg.tokenizer.path:
        p = Path(cfg.tokenizer.path).expanduser()
        files = sorted(p.iterdir()) if p.is_dir() else [p] if p.exists() else []
        tok_source = [
            [str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()
        ]
    config = cfg.model_dump(mode="json", exclude=_NOT_IN_FINGERPRINT)
    # Keys added after format 1 are left out at their defaults, so older data keeps its key.
    for key, default in (("domain_field", None), ("text_field", "text")):
        if config.get(key) == default:
            config.pop(key, None)
    return {
        "format_version": FORMAT_VERSION,
        "config": config,
        "sources": corpus.identity(),
        "tokenizer_source": tok_source,
    }


def reusable(out: Path, fingerprint: str) -> PreparedData | None:
    """Complete, undamaged data for these settings in `out`, or None."""
    index = _read_index(out)
    if not isinstance(index, dict) or index.get("fingerprint") != fingerprint:
        return None
    try:
        return PreparedData.open(out)
    except DataError:
        return None  # damaged: rebuilt from the same settings


def check_replaceable(out: Path, settings: dict[str, Any], *, replace: bool) -> None:
    """Raise unless `out` may receive data for `settings`: missing or empty, our own data for
    the same settings (damaged), or our data for other settings when `replace`. "Ours" means
    listed in `out`'s manifest (PREPARED_FILES); only those files are ever replaced."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(f"{out} exists and is not a folder; choose another output folder")
    if not any(p.name != LOCK_FILE for p in out.iterdir()):
        return
    index_path = out / INDEX_FILE
    index = _read_index(out)
    if owned_files(out) is None:
        if not index_path.exists():
            raise DataError(
                f"{out} is not empty and holds no prepared data; choose another output folder "
                "or empty it"
            )
        if index is None:
            raise DataError(
                f"{index_path} is unreadable and {out} has no {PREPARED_FILES} (the list of "
                "files prepare wrote), so prepare cannot tell its files from yours and replaces "
                "nothing there, --force or not: move out what you want to keep and delete the "
                "folder, or prepare into another folder"
            )
    if index is None or index is False:  # ours, but damaged or interrupted
        if replace:
            return
        raise DataError(
            f"the prepared data in {out} is damaged or incomplete ({INDEX_FILE} "
            f"{'is unreadable' if index is None else 'is missing'}); its files are listed in "
            f"{PREPARED_FILES}, so prepare can replace exactly those (anything else there "
            f"stays): lossreweight prepare CONFIG --out {out} --force"
        )
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DataError(
            f"{out} holds an index.json that is not lossreweight data; choose another folder"
        )
    if index.get("fingerprint") == fingerprint_of(settings) or replace:
        return
    difference = describe_difference(index.get("settings"), settings)
    raise DataError(
        f"{out} holds data prepared with other settings ({difference}); to train on it as it "
        f"is, pass data.prepared={out} (and no --data-dir); to prepare these settings, choose "
        f"another folder, or replace it (only the files prepare wrote there): "
        f"lossreweight prepare CONFIG --out {out} --force"
    )


def owned_files(out: Path) -> set[str] | None:
    """The files an earlier prepare wrote into `out`: its manifest, or for data written
    before manifests, what its index names (shards, tokenizer folder, index); None when
    neither can be read (nothing there is provably ours)."""
    listed = read_manifest(out, PREPARED_FILES)
    if listed is not None:
        return listed
    index = _read_index(out)
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        return None
    try:
        files = {INDEX_FILE}
        for split in index["splits"].values():
            for entry in split.values():
                files.update(str(s["file"]) for s in entry["shards"])
        tok = str(index["tokenizer"]["dir"])
        files.update(f"{tok}/{f}" for f in list_files(out / tok))
    except (KeyError, TypeError, AttributeError, OSError):
        return None
    if "unigram" in index:
        files.add(UNIGRAM_FILE)
    return files


def fingerprint_of(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def describe_difference(old: Any, new: dict[str, Any], limit: int = 3) -> str:
    """'seq_len is 64 there, 128 here; ...' for the first `limit` differing settings."""
    if not isinstance(old, dict):
        return "written by another version of lossreweight"
    if "joined" in old:
        return f"it was joined from {len(old['joined'])} prepared folders by prepare --join"
    a, b = _flatten(old), _flatten(new)
    parts = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key):
            continue
        if key.startswith("sources."):
            parts.append("the source files or package versions differ")
        elif key.startswith("tokenizer_source"):
            parts.append("the tokenizer files differ")
        elif key == "format_version":
            parts.append(f"shard format {a.get(key)} there, {b.get(key)} here")
        else:
            name = key.removeprefix("config.")
            parts.append(f"{name} is {_short(a.get(key))} there, {_short(b.get(key))} here")
    parts = list(dict.fromkeys(parts))
    more = f"; and {len(parts) - limit} more" if len(parts) > limit else ""
    return "; ".join(parts[:limit]) + more if parts else "other source identities"


def move_into(tmp: Path, out: Path, owned: set[str]) -> None:
    """Replace the files prepare wrote in `out` (`owned`) with the new files in `tmp`, leaving
    everything else there alone. The manifest first lists both old and new files (so a kill at
    any point leaves every file of ours listed), the old index goes first and the new one
    comes last (so `out` never looks complete while mixed), then the manifest lists the new."""
    new = list_files(tmp) - {WORK_MARKER}
    out.mkdir(parents=True, exist_ok=True)
    in_the_way = sorted(
        rel
        for rel in new
        if not real_dirs(out, rel)
        or (os.path.lexists(out / rel) and (rel not in owned or (out / rel).is_dir()))
    )
    if in_the_way:
        more = f" and {len(in_the_way) - 3} more" if len(in_the_way) > 3 else ""
        raise DataError(
            f"{out} holds {', '.join(in_the_way[:3])}{more} where prepare writes its own files "
            "(not written by prepare, or a link); move them away, or prepare into another folder"
        )
    write_manifest(out, PREPARED_FILES, owned | new)
    remove_listed(out, [INDEX_FILE] if INDEX_FILE in owned else [])
    remove_listed(out, owned - new)
    for rel in sorted(new, key=lambda r: (r == INDEX_FILE, r)):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / rel, out / rel)
    write_manifest(out, PREPARED_FILES, new, written_by="lossreweight prepare")


def _read_index(out: Path) -> Any:
    try:
        return json.loads((out / INDEX_FILE).read_text())
    except FileNotFoundError:
        return False
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            flat |= _flatten(v, f"{prefix}{k}.")
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
