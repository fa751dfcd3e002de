"""`lossreweight experiment NAME [--quick] [--out DIR]`: run one of the paper's studies."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_parser(p: argparse.ArgumentParser) -> None:
    from lossreweight.experiments.studies import STUDIES

    names = "; ".join(f"{k}: {v}" for k, v in STUDIES.items())
    p.add_argument(
        "name", metavar="NAME", help=f"the study ({names})".replace("%", "%%")
    )  # argparse formats %
    p.add_argument("--quick", action="store_true", help="a small, fast version (minutes at most)")
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="output folder (default runs/NAME, or runs/NAME-quick with --quick); "
        "re-running reuses finished training runs, and runs with changed settings "
        "go beside them (runs/by-config/HASH/), never replacing them",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="train N runs side by side in N processes (default 1; 2 on a 2-core machine)",
    )
    p.add_argument(
        "--no-train",
        action="store_true",
        help="train nothing: report the seeds whose every run is finished (e.g. while a long "
        "study is still running, or after it was stopped)",
    )


def run(args: argparse.Namespace) -> int:
    from lossreweight.commands.compare import check_jobs, log, print_result
    from lossreweight.experiments.studies import default_out, get_study

    study = get_study(args.name)  # unknown names fail before anything runs
    check_jobs(args.jobs)
    start = time.perf_counter()
    out = Path(args.out) if args.out else default_out(args.name, args.quick)
    summary = study.run(
        out, quick=args.quick, log=log, jobs=args.jobs, train_missing=not args.no_train
    )
    print_result(summary, out, table=False, suffix=f"  ({time.perf_counter() - start:.0f} s)")
    return 0
