"""The toy least-squares study (paper Figure 7): steps to a target loss per strategy.

Trains no language model: every strategy x learning rate x seed advances together as one
batched simulation (`simulation`; `analysis` reads the numbers, `figures` draws and writes
the page), so this study overrides `Study.run` and keeps the
harness's output-folder rule, verdict-first page and paired intervals.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lossreweight.experiments.harness import Plan, Study, claim_output_dir, finish_output_dir
from lossreweight.experiments.page import PAGE_FILE, SUMMARY_FILE, write_study
from lossreweight.experiments.runs import Log
from lossreweight.experiments.stats import excludes_zero, spread
from lossreweight.experiments.studies.linreg.analysis import build_summary
from lossreweight.experiments.studies.linreg.simulation import (
    DEFAULT_SEEDS,
    QUICK_SEEDS,
    LinregConfig,
    make_problem,
    plan_arms,
    quick_config,
    simulate,
)
from lossreweight.reweighting import get_strategy


def paired_steps(summary: dict[str, Any], arm: str, base: str = "uniform") -> dict[str, Any]:
    """arm - base in steps to target per seed (the main setting), with a 95% interval; a seed
    where either never reached the target is missing, and then so are the mean and interval."""
    per = summary["steps_to_target_per_seed"]
    diffs = [
        a - b if a is not None and b is not None else None
        for a, b in zip(per[arm], per[base], strict=True)
    ]
    return spread(diffs)


def verdict(summary: dict[str, Any], cfg: LinregConfig) -> str:
    cands = []
    for s in cfg.strategies:
        if s == "uniform":
            continue
        d = paired_steps(summary, s)
        if d["mean"] is not None:
            cands.append((d["mean"], s, d))
    regime = (
        f"on the toy least-squares problem (d = {cfg.dim}, lr {cfg.lr:g}, r = {cfg.temperature:g}, "
        f"{len(summary['seeds'])} seeds, no burn-in)"
    )
    if not cands:
        return f"No strategy reached the target on every seed together with uniform, {regime}."
    m, s, d = min(cands)
    if d["ci95"]:
        lo, hi = d["ci95"]
        ex = "excludes zero" if excludes_zero(d) else "includes zero"
        interval = f"95% interval [{lo:+.1f}, {hi:+.1f}], which {ex}"
    else:
        interval = "one seed, so no interval"
    word = "fewer" if m < 0 else "more"
    return (
        f"{s} reaches {cfg.target:g} x the initial test loss in {abs(m):.1f} {word} steps "
        "than uniform "
        f"on average ({interval}), {regime}."
    )


class Linreg(Study):
    name = "linreg"
    title = "linreg: loss-based reweighting on toy least squares"

    def plan(self, quick: bool) -> Plan:
        return Plan((), QUICK_SEEDS if quick else DEFAULT_SEEDS)

    def run(
        self,
        out: Path,
        *,
        quick: bool = False,
        log: Log | None = None,
        jobs: int = 1,
        train_missing: bool = True,
        seeds: list[int] | None = None,
        config: LinregConfig | None = None,
    ) -> dict[str, Any]:
        return run_linreg(out, quick=quick, seeds=seeds, config=config)


def run_linreg(
    out_dir: Path,
    *,
    quick: bool = False,
    seeds: list[int] | None = None,
    config: LinregConfig | None = None,
) -> dict[str, Any]:
    """Run the study; write summary.json, PNG plots and index.html into `out_dir`.

    quick: the test budget (fewer steps, seeds 0 and 1). `config` overrides the settings.
    Returns the summary (the content of summary.json).
    """
    from lossreweight.experiments.studies.linreg.figures import TITLE, report_sections, write_plots

    start = time.perf_counter()
    cfg = config or (quick_config() if quick else LinregConfig())
    seeds = list(seeds) if seeds is not None else list(QUICK_SEEDS if quick else DEFAULT_SEEDS)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct integers, got {seeds!r}")
    for s in cfg.strategies:
        get_strategy(s)  # fail early on a bad name, with the library's message
    out = Path(out_dir)
    owned = claim_output_dir(out, "experiment", "linreg")
    traj = simulate(make_problem(cfg, seeds), plan_arms(cfg), cfg.steps)
    summary = build_summary(cfg, traj, quick=quick)
    summary["paired_steps_vs_uniform"] = {
        s: paired_steps(summary, s) for s in cfg.strategies if s != "uniform"
    }
    summary["verdict"] = verdict(summary, cfg)
    files = write_plots(out, cfg, traj, summary)
    summary["files"] = {"summary": SUMMARY_FILE, **files, "html": PAGE_FILE}
    summary["runtime_s"] = round(time.perf_counter() - start, 2)
    written = write_study(out, summary, TITLE, report_sections(cfg, summary, files))
    finish_output_dir(out, "experiment", "linreg", owned, set(summary["files"].values()))
    return written


STUDY = Linreg()
