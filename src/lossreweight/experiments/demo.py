"""The demo: uniform vs LinUpper on the embedded corpus, in the paper's regime.

The `replicate` protocol (2.6 tokens per parameter, uniform burn-in for the first 5% of the
steps, lr warm-up 2.5%, cosine to 0.2x, weight decay 0.01, the natural-text domains) at its
smallest sizes, so it fits a 2-core CPU:

- full: the 0.5M-parameter model, one seed, both runs side by side (about 5 minutes on an
  idle 2-core machine, data preparation included); its runs are the replicate study's uniform
  and linupper-r0.4 at seed 0, so a demo next to a finished replicate copies them.
- quick: the tiny quick model on a corpus slice, three seeds (well under a minute), so the
  verdict has an interval.

The page and the terminal open with the verdict in one sentence.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lossreweight.experiments.compare import run_compare
from lossreweight.experiments.runs import Log
from lossreweight.experiments.scales import paper_scale

STRATEGIES: tuple[str, ...] = ("uniform", "linupper")
FULL_SEEDS: tuple[int, ...] = (0,)
QUICK_SEEDS: tuple[int, ...] = (0, 1, 2)
DEFAULT_OUT = Path("runs/demo")
QUICK_OUT = Path("runs/demo-quick")


def demo_overrides(quick: bool) -> tuple[str, ...]:
    sc, _ = paper_scale(quick)
    return sc.overrides


def run_demo(
    out_dir: Path | None = None,
    *,
    quick: bool = False,
    log: Log | None = None,
    extra_overrides: tuple[str, ...] = (),
) -> dict[str, Any]:
    out = Path(out_dir) if out_dir is not None else (QUICK_OUT if quick else DEFAULT_OUT)
    overrides = [*demo_overrides(quick), *extra_overrides]
    title = f"demo{' (quick)' if quick else ''}: uniform vs linupper in the paper's regime"
    jobs = 2 if (os.cpu_count() or 1) >= 2 else 1
    return run_compare(
        "tiny",
        out,
        list(STRATEGIES),
        list(QUICK_SEEDS if quick else FULL_SEEDS),
        overrides,
        log=log,
        title=title,
        command="demo",
        jobs=jobs,
        reuse_from=[out.parent],
    )
