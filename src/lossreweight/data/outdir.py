"""The output folder of a preparation: is it reusable, may it be replaced, and moving a
finished build into it. Data prepared with other settings is the user's: it is never
replaced without being asked, and the error names what differs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from lossreweight.data.config import DataConfig
from lossreweight.data.corpus import Corpus
from lossreweight.data.prepared import PreparedData
from lossreweight.data.shards import FORMAT, FORMAT_VERSION, INDEX_FILE
from lossreweight.errors import DataError
from lossreweight.locking import LOCK_FILE

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
    the same settings (damaged), or our data for other settings when `replace`."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(f"{out} exists and is not a folder; choose another output folder")
    index_path = out / INDEX_FILE
    if not index_path.is_file():
        if any(p.name != LOCK_FILE for p in out.iterdir()):
            raise DataError(
                f"{out} is not empty and holds no prepared data; choose another output folder "
                "or empty it"
            )
        return
    index = _read_index(out)
    if index is None:
        if replace:
            return
        raise DataError(
            f"{out}/{INDEX_FILE} is unreadable: the prepared data there is damaged; delete the "
            "folder, or replace it with lossreweight prepare ... --force"
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
        f"another folder, or replace it: lossreweight prepare CONFIG --out {out} --force"
    )


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


def move_into(tmp: Path, out: Path) -> None:
    """Replace the contents of `out` (the lock file aside) with those of `tmp`: the old index
    goes first and the new one comes last, so `out` never looks complete while mixed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / INDEX_FILE).unlink(missing_ok=True)
    for old in out.iterdir():
        if old.name != LOCK_FILE:
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    for new in sorted(tmp.iterdir(), key=lambda p: p.name == INDEX_FILE):
        os.rename(new, out / new.name)


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
