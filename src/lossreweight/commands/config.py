"""`lossreweight config [PRESET|FILE] [key=value ...]`: the resolved configuration as YAML,
each key with its meaning as a comment (every key: docs/config.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

ACCEPTS_OVERRIDES = True


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config",
        nargs="?",
        default=None,
        metavar="PRESET|FILE",
        help="a preset name or a YAML file (default: the built-in defaults)",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override any key by dotted path, as for train",
    )
    p.add_argument("--list-presets", action="store_true", help="print the preset names and exit")


def run(args: argparse.Namespace) -> int:
    from lossreweight.config import (
        apply_overrides,
        load_config,
        preset_names,
        validate_config,
    )
    from lossreweight.config.reference import render_yaml

    if args.list_presets:
        print("\n".join(preset_names()))
        return 0
    overrides = list(args.overrides)
    if args.config is not None and "=" in args.config and not Path(args.config).is_file():
        # `config key=value ...`: no preset given, the defaults are overridden
        overrides.insert(0, args.config)
        args.config = None
    if args.config is None:
        cfg = validate_config(apply_overrides({}, overrides), where="defaults")
        title = "the built-in defaults" + (f" with {' '.join(overrides)}" if overrides else "")
    else:
        cfg = load_config(args.config, overrides)
        title = f"{args.config}" + (f" with {' '.join(overrides)}" if overrides else "")
    print(render_yaml(cfg, f"lossreweight config: {title}"), end="")
    return 0
