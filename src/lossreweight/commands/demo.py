"""`lossreweight demo [--quick] [--out DIR]`: uniform vs linupper on the embedded corpus."""

from __future__ import annotations

import argparse
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


def run(args: argparse.Namespace) -> int:
    from lossreweight.commands.compare import log, report_lines
    from lossreweight.experiments.demo import DEFAULT_OUT, QUICK_OUT, run_demo

    start = time.perf_counter()
    out = Path(args.out) if args.out else (QUICK_OUT if args.quick else DEFAULT_OUT)
    summary = run_demo(out, quick=args.quick, log=log)
    print(f"verdict: {summary['verdict']}")
    print(report_lines(summary, out))
    print(f"demo took {time.perf_counter() - start:.0f} s")
    return 0
