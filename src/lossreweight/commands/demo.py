"""`lossreweight demo [--quick] [--out DIR]`: uniform vs linupper on the embedded corpus."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quick",
        action="store_true",
        help="a small corpus and model, three seeds (under a minute) instead of the 0.5M model "
        "at 2.6 tokens/param (about 5 minutes on 2 cores)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="output folder (default runs/demo, or runs/demo-quick with --quick); "
        "re-running reuses finished runs; a folder another command wrote is refused",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="train N runs side by side (default 2 on a machine with 2 or more cores, else 1)",
    )
    p.add_argument(
        "--no-train",
        action="store_true",
        help="train nothing: report the seeds whose every run is finished",
    )


def run(args: argparse.Namespace) -> int:
    from lossreweight.commands.compare import check_jobs, log, print_result
    from lossreweight.experiments.compare import DEMO_OUT, DEMO_QUICK_OUT, Demo

    jobs = args.jobs if args.jobs is not None else (2 if (os.cpu_count() or 1) >= 2 else 1)
    check_jobs(jobs)
    start = time.perf_counter()
    out = Path(args.out) if args.out else (DEMO_QUICK_OUT if args.quick else DEMO_OUT)
    summary = Demo(args.quick).run(
        out, quick=args.quick, log=log, jobs=jobs, train_missing=not args.no_train
    )
    print_result(summary, out)
    print(f"demo took {time.perf_counter() - start:.0f} s")
    return 0
