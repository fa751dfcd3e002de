"""Study `strategies`: uniform, LinUpper, Quadratic and Extremes on the embedded corpus, the
same batches and init within a seed, several seeds; per-domain and average validation loss,
the paired difference to uniform per seed, and steps to reach uniform's final loss."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lossreweight.experiments.arm_plots import standard_plots
from lossreweight.experiments.compare import standard_sections, train_arms
from lossreweight.experiments.plotting import Section, Table, colors_for
from lossreweight.experiments.runs import Arm, Log
from lossreweight.experiments.studies.common import (
    BASE_CONFIG,
    diff_text,
    full_scale,
    quick_scale,
    study_dir,
)
from lossreweight.experiments.study import write_study

NAME = "strategies"
STRATEGIES: tuple[str, ...] = ("uniform", "linupper", "quadratic", "extremes")


def scale(quick: bool):  # noqa: ANN201 - a Scale
    # r = 0.4 (the preset, the paper's default), no warm-up, micro scope.
    return quick_scale(seeds=(0, 1)) if quick else full_scale(100, 20, (0, 1, 2))


def paired_table(summary: dict[str, Any]) -> Table:
    """val_loss - uniform for each seed, then mean ± std."""
    seeds = summary["seeds"]
    rows = []
    for arm, r in summary["runs"].items():
        d = r.get("diff_vs_uniform")
        if arm == "uniform" or d is None:
            continue
        per = d["val_loss"]["per_seed"]
        st = d["steps_to_baseline_final"]["per_seed"]
        rows.append([arm, *per, d["val_loss"]["mean"], d["val_loss"]["std"], *st])
    cols = ["arm", *[f"seed {s}" for s in seeds], "mean", "std", *[f"steps seed {s}" for s in seeds]]
    return Table(cols, rows, "paired val_loss - uniform per seed (negative: better), and steps to reach "
                             "uniform's final val_loss per seed (empty: not reached)")


def run_strategies(out_dir: Path | str | None = None, *, quick: bool = False, log: Log | None = None) -> dict[str, Any]:
    start = time.perf_counter()
    out = study_dir(NAME, out_dir, quick)
    sc = scale(quick)
    arms = [Arm.strategy(s) for s in STRATEGIES]
    records, summary = train_arms(BASE_CONFIG, out, arms, sc.seeds, sc.overrides, log=log,
                                  reuse_from=[out.parent])
    files = standard_plots(out, records, summary, colors=colors_for(STRATEGIES))
    conclusions = [diff_text(a, summary["runs"][a], "uniform") for a in STRATEGIES if a != "uniform"]
    summary.update({
        "study": NAME, "quick": quick, "steps": sc.steps, "conclusions": conclusions,
        "files": {**files, "html": "index.html", "summary": "summary.json"},
        "runtime_s": round(time.perf_counter() - start, 2),
    })
    sections = standard_sections(summary, files, intro=[
        "uniform, linupper, quadratic and extremes at r = 0.4 (delta = 1, no warm-up, weights over each "
        f"micro-batch of 16), {sc.steps} steps of the tiny preset on the embedded corpus."
    ])
    sections.insert(1, Section("Paired differences to uniform", conclusions, tables=[paired_table(summary)]))
    return write_study(out, summary, f"strategies: {', '.join(STRATEGIES)}", sections)
