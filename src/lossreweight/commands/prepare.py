"""`lossreweight prepare CONFIG [--out DIR]`: tokenize a corpus into token shards."""

from __future__ import annotations

import argparse
import sys
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lossreweight.errors import ConfigError

# Sections of a full run config that belong to other commands; `prepare` ignores them.
_OTHER_SECTIONS = {
    "model",
    "train",
    "reweight",
    "eval",
    "evaluate",
    "experiment",
    "log",
    "logging",
    "run",
    "checkpoint",
    "compare",
    "report",
}


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config",
        metavar="CONFIG",
        help="a YAML file (its data: section, or the whole file) or a preset name",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="where to write the shards (default: a cache folder keyed by the settings)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from lossreweight.data import DataWarning, prepare_data

    cfg = load_data_config(args.config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        data = prepare_data(cfg, args.out, progress=not args.quiet and sys.stderr.isatty())
    for w in caught:
        if issubclass(w.category, DataWarning):
            print(f"lossreweight prepare: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    print(format_table(data.stats()))
    tok = data.index["tokenizer"]
    print(f"\ndata: {data.root}")
    print(
        f"tokenizer: {tok['kind']}, {data.vocab_size} tokens, end-of-text id {data.eos_id} "
        f"({data.tokenizer_dir}); seq_len {data.seq_len}; ids stored as {data.index['dtype']}"
    )
    return 0


def load_data_config(name: str) -> Any:
    """The DataConfig of a YAML file or preset (see `add_parser`)."""
    from lossreweight.data import DataConfig

    text, origin = _read_config(name)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML ({' '.join(str(exc).split())})") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of settings, got {type(raw).__name__}")
    if "data" in raw:
        section, prefix = raw["data"] or {}, "data."
        if not isinstance(section, dict):
            raise ConfigError(f"{origin}: data: must be a mapping of settings")
    else:
        section, prefix = {k: v for k, v in raw.items() if k not in _OTHER_SECTIONS}, ""
    try:
        return DataConfig.model_validate(section)
    except ValidationError as exc:
        problems = "; ".join(
            f"{prefix}{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{origin}: {problems}") from None


def _read_config(name: str) -> tuple[str, str]:
    path = Path(name).expanduser()
    if path.is_file():
        return path.read_text(encoding="utf-8"), str(path)
    presets = _presets()
    if name in presets:
        return presets[name].read_text(encoding="utf-8"), f"preset {name}"
    listed = ", ".join(sorted(presets)) or "none installed"
    raise ConfigError(
        f"config {name!r} not found: it is neither a file nor a preset (presets: {listed})"
    )


def _presets() -> dict[str, Any]:
    """Preset name -> resource, from lossreweight/configs/*.yaml (absent: no presets)."""
    try:
        folder = resources.files("lossreweight").joinpath("configs")
        if not folder.is_dir():
            return {}
        return {f.name[: -len(".yaml")]: f for f in folder.iterdir() if f.name.endswith(".yaml")}
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        return {}


def format_table(stats: dict[str, dict[str, int]]) -> str:
    """Per-domain counts as an aligned text table with a total row."""
    cols = [
        ("documents", "documents"),
        ("characters", "characters"),
        ("tokens", "tokens"),
        ("train_sequences", "train seqs"),
        ("val_sequences", "val seqs"),
    ]
    rows = [[d] + [f"{s[k]:,}" for k, _ in cols] for d, s in stats.items()]
    rows.append(["total"] + [f"{sum(s[k] for s in stats.values()):,}" for k, _ in cols])
    header = ["domain"] + [title for _, title in cols]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(
            [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        )

    return "\n".join([line(header), *map(line, rows)])
