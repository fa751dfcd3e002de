"""`lossreweight experiment NAME [--quick] [--out DIR]`: run one of the paper's studies."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_parser(p: argparse.ArgumentParser) -> None:
    from lossreweight.experiments.studies import STUDIES

    names = "; ".join(f"{k}: {v[2]}" for k, v in STUDIES.items())
    p.add_argument("name", metavar="NAME", help=f"the study ({names})")
    p.add_argument("--quick", action="store_true", help="a small, fast version (under a minute)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default runs/NAME, or runs/NAME-quick with --quick); "
                        "re-running reuses finished training runs")


def run(args: argparse.Namespace) -> int:
    from lossreweight.commands.compare import log
    from lossreweight.experiments.studies import default_out, get_study, run_study

    get_study(args.name)  # unknown names fail before anything runs
    start = time.perf_counter()
    out = Path(args.out) if args.out else default_out(args.name, args.quick)
    summary = run_study(args.name, out, quick=args.quick, log=log)
    for line in summary.get("conclusions", []):
        print(f"- {line}")
    html = summary.get("files", {}).get("html", "index.html")
    print(f"report: {out / html}  ({time.perf_counter() - start:.0f} s)")
    return 0
