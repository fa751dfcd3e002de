"""`lossreweight compare CONFIG --out DIR --strategies uniform,linupper[,...]`.

Also takes `[--seeds 0,1,2] [key=value ...]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

ACCEPTS_OVERRIDES = True


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config", metavar="CONFIG", help="a YAML config file or a preset name (e.g. tiny)"
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder: runs/<strategy>-seed<k>/, summary.json, plots, report.html; "
        "re-running skips finished runs and resumes interrupted ones; runs with changed "
        "settings go beside the finished ones (runs/by-config/HASH/); a training run or "
        "a non-empty folder that compare did not write is refused",
    )
    p.add_argument(
        "--strategies",
        required=True,
        metavar="LIST",
        help="comma-separated strategies, e.g. uniform,linupper,quadratic",
    )
    p.add_argument(
        "--seeds",
        default="0",
        metavar="LIST",
        help="comma-separated train seeds (model init and batch order), default 0",
    )
    p.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="train N runs side by side (default 1)"
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override any config field by dotted path (not reweight.strategy or train.seed)",
    )


def log(msg: str) -> None:
    print(msg, flush=True)


def report_lines(summary: dict[str, Any], out: Path) -> str:
    from lossreweight.experiments.tables import short_table

    lines = [short_table(summary)]
    if summary.get("same_batches") is False:
        lines.append(
            "warning: the strategies did not see the same batches (different data settings?)"
        )
    lines.append(f"report: {out / summary['files']['html']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from lossreweight.experiments.compare import (
        check_overrides,
        parse_seeds,
        parse_strategies,
        run_compare,
    )

    strategies = parse_strategies(args.strategies)
    seeds = parse_seeds(args.seeds)
    from lossreweight.errors import ConfigError

    check_overrides(args.overrides)
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    out = Path(args.out)
    summary = run_compare(
        args.config, out, strategies, seeds, args.overrides, log=log, jobs=args.jobs
    )
    print(f"verdict: {summary['verdict']}")
    print(report_lines(summary, out))
    return 0
