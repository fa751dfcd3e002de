"""`lossreweight prepare CONFIG [--out DIR] [--workers N] [--force] [data.key=value ...]`:
tokenize a corpus into token shards; `lossreweight prepare --join DIR DIR ... --out DIR`:
join folders prepared on several machines into one."""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from typing import Any

ACCEPTS_OVERRIDES = True


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config",
        metavar="CONFIG",
        nargs="?",
        help="a YAML file (its data: section, or the whole file) or a preset name",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="where to write the shards (default: a cache folder keyed by the settings)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        default=None,
        help="tokenizer processes (default: one per core); the output is the same for any N",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace data prepared with other settings in --out (never a folder that is not "
        "prepared data)",
    )
    p.add_argument(
        "--join",
        nargs="+",
        metavar="DIR",
        default=None,
        help="join these prepared folders (same tokenizer and seq_len) into --out",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="data.key=value",
        help="override a data setting by dotted path, as for train",
    )


def run(args: argparse.Namespace) -> int:
    from lossreweight.data.prepare import max_workers
    from lossreweight.errors import ConfigError

    progress = not args.quiet and sys.stderr.isatty()
    if args.workers is not None and not 1 <= args.workers <= max_workers():
        raise ConfigError(
            f"--workers must be from 1 to {max_workers()} (4 per core, at least 16), got "
            f"{args.workers}: each worker is a process with its own tokenizer"
        )
    # SIGTERM (a scheduler, `kill`) unwinds like Ctrl-C: the temporary folder and the lock
    # file go, and the exit code is 130; a SIGKILL's leftovers go at the next run.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _run(args, progress)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace, progress: bool) -> int:
    from lossreweight.data import DataWarning, prepare_data
    from lossreweight.errors import ConfigError

    if args.join is not None:
        return _join(args, progress)
    if args.config is None:
        raise ConfigError("give a CONFIG (a preset or YAML file), or --join DIR DIR ... --out DIR")
    cfg = load_data_config(args.config, getattr(args, "overrides", []))
    if cfg.prepared is not None:
        raise ConfigError(
            f"data.prepared={cfg.prepared} names data that is already prepared: train on it "
            "with lossreweight train CONFIG data.prepared=DIR; prepare needs sources"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        data = prepare_data(
            cfg, args.out, progress=progress, workers=args.workers, replace=args.force
        )
    for w in caught:
        if issubclass(w.category, DataWarning):
            print(f"lossreweight prepare: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    _report(data)
    return 0


def _join(args: argparse.Namespace, progress: bool) -> int:
    from lossreweight.data.join import join_prepared
    from lossreweight.errors import ConfigError

    if args.out is None or args.config is not None or getattr(args, "overrides", []):
        raise ConfigError(
            "--join takes prepared folders and --out DIR only: prepare --join A B --out C"
        )
    _report(join_prepared(args.join, args.out, progress=progress))
    return 0


def _report(data: Any) -> None:
    print(format_table(data.stats()))
    tok = data.index["tokenizer"]
    print(f"\ndata: {data.root}")
    print(
        f"tokenizer: {tok['kind']}, {data.vocab_size} tokens, end-of-text id {data.eos_id} "
        f"({data.tokenizer_dir}); seq_len {data.seq_len}; ids stored as {data.index['dtype']}"
    )


def load_data_config(name: str, overrides: list[str] | None = None) -> Any:
    """The DataConfig of a YAML file or preset, through the one config loader."""
    from lossreweight.config import load_data_config as load

    return load(name, overrides)


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
