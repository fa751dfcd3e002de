"""`lossreweight compare CONFIG --out DIR --strategies uniform,linupper[,...]`.

Also takes `[--seeds 0,1,2] [key=value ...]`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lossreweight.errors import ConfigError

ACCEPTS_OVERRIDES = True


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config", metavar="CONFIG", help="a YAML config file or a preset name (e.g. tiny)"
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder: runs/<strategy>-seed<k>/, summary.json, plots, index.html; "
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
        "--no-train",
        action="store_true",
        help="train nothing: report the seeds whose every run is finished",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override any config field by dotted path (not reweight.strategy or train.seed)",
    )


def parse_strategies(text: str) -> list[str]:
    """ "uniform,linupper" -> ["uniform", "linupper"]; unknown or repeated names fail early."""
    from lossreweight.reweighting import available_strategies

    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise ConfigError(
            "--strategies is empty; give a comma-separated list, e.g. uniform,linupper"
        )
    valid = available_strategies()
    for n in names:
        if n not in valid:
            hint = " ('upper' is ambiguous: say 'linear' or 'linupper')" if n == "upper" else ""
            raise ConfigError(
                f"--strategies: unknown strategy {n!r}{hint}; valid: {', '.join(valid)}"
            )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"--strategies names {', '.join(dupes)} more than once")
    return names


def parse_seeds(text: str) -> list[int]:
    """ "0,1,2" -> [0, 1, 2]: distinct integers >= 0."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(
            f"--seeds must be comma-separated integers, e.g. 0,1,2; got {text!r}"
        ) from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must be distinct integers >= 0, e.g. 0,1,2; got {text!r}")
    return seeds


def check_overrides(overrides: Sequence[str]) -> None:
    """The strategy and the seed come from --strategies and --seeds, never from an override."""
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key == "reweight.strategy":
            raise ConfigError("give strategies with --strategies, not reweight.strategy=...")
        if key == "train.seed":
            raise ConfigError("give seeds with --seeds, not train.seed=...")


def log(msg: str) -> None:
    print(msg, flush=True)


def check_jobs(jobs: int) -> None:
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")


def print_result(
    summary: dict[str, Any], out: Path, *, table: bool = True, suffix: str = ""
) -> None:
    """What every study prints when it ends: the verdict, the results, where the page is."""
    from lossreweight.experiments.page import short_table

    if summary.get("verdict"):
        print(f"verdict: {summary['verdict']}")
    if table and summary.get("runs"):
        print(short_table(summary))
    else:
        for line in summary.get("conclusions", []):
            print(f"- {line}")
    if summary.get("same_batches") is False:
        print("warning: the arms did not see the same batches (different data settings?)")
    print(f"report: {out / summary.get('files', {}).get('html', 'index.html')}{suffix}")


def run(args: argparse.Namespace) -> int:
    from lossreweight.experiments.compare import Compare

    strategies, seeds = parse_strategies(args.strategies), parse_seeds(args.seeds)
    check_overrides(args.overrides)
    study = Compare(args.config, strategies, seeds, args.overrides)
    check_jobs(args.jobs)
    out = Path(args.out)
    summary = study.run(out, log=log, jobs=args.jobs, train_missing=not args.no_train)
    print_result(summary, out)
    return 0
