"""`lossreweight report DIR... [--out FILE]`: combine study folders into one HTML page."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "dirs",
        nargs="+",
        metavar="DIR",
        help="folders written by `experiment`, `compare` or `demo` (others, e.g. training runs "
        "matched by runs/*, are skipped with a note)",
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        default="runs/report.html",
        help="the page to write (default runs/report.html)",
    )
    p.add_argument("--embed", action="store_true", help="inline the PNGs: one self-contained file")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing .html file that `lossreweight report` did not write",
    )


def run(args: argparse.Namespace) -> int:
    from lossreweight.experiments.page import build_report

    page = build_report(
        [Path(d) for d in args.dirs],
        Path(args.out),
        embed=args.embed,
        force=args.force,
        note=lambda msg: print(msg, flush=True),
    )
    print(f"report: {page}")
    return 0
