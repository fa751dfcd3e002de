"""Compare strategies side by side: every strategy x seed on the same data and batches, then
summary.json, plots and report.html (`lossreweight compare`, `lossreweight demo`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lossreweight.errors import ConfigError
from lossreweight.experiments.arm_plots import standard_plots
from lossreweight.experiments.plotting import colors_for
from lossreweight.experiments.runs import Arm, Log, check_configs, run_arms
from lossreweight.experiments.sections import standard_sections
from lossreweight.experiments.study import write_study
from lossreweight.experiments.summary import Records, summarize


def parse_strategies(text: str | Sequence[str]) -> list[str]:
    """ "uniform,linupper" -> ["uniform", "linupper"]; unknown or repeated names fail early."""
    from lossreweight.reweighting import available_strategies

    names = (
        [s.strip() for s in text.split(",")] if isinstance(text, str) else [s.strip() for s in text]
    )
    names = [n for n in names if n]
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


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    """ "0,1,2" -> [0, 1, 2]: distinct integers >= 0."""
    if isinstance(text, str):
        try:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(
                f"--seeds must be comma-separated integers, e.g. 0,1,2; got {text!r}"
            ) from None
    else:
        seeds = [int(s) for s in text]
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


def train_arms(
    config: str | Path,
    out: Path,
    arms: Sequence[Arm],
    seeds: Sequence[int],
    overrides: Sequence[str] = (),
    *,
    baseline: str | None = "uniform",
    log: Log | None = None,
    reuse_from: Sequence[Path] = (),
    jobs: int = 1,
) -> tuple[Records, dict[str, Any]]:
    """Train (or reuse) every arm x seed under `out/runs/` and summarise them."""
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ConfigError(f"arm names must be distinct, got {names}")
    records = run_arms(
        config,
        list(overrides),
        arms,
        seeds,
        Path(out) / "runs",
        log=log,
        reuse_from=reuse_from,
        jobs=jobs,
    )
    summary = summarize(records, baseline=baseline if baseline in names else None)
    summary.update(
        {
            "config": str(config),
            "overrides": list(overrides),
            "arm_overrides": {a.name: list(a.overrides) for a in arms},
        }
    )
    return records, summary


def run_compare(
    config: str | Path,
    out_dir: str | Path,
    strategies: Sequence[str],
    seeds: Sequence[int] = (0,),
    overrides: Sequence[str] = (),
    *,
    log: Log | None = None,
    title: str = "",
    command: str = "compare",
    jobs: int = 1,
    reuse_from: Sequence[Path] = (),
) -> dict[str, Any]:
    """`lossreweight compare` (and the demo): returns the summary written to `out_dir/summary.json`.

    The folder must be new, empty, or written by the same `command` before (see `outdir`).
    """
    from lossreweight.experiments.harness import best_arm_verdict, page_head, paired_sentence
    from lossreweight.experiments.outdir import claim_output_dir
    from lossreweight.experiments.setup import setup_rows

    start = time.perf_counter()
    out = Path(out_dir)
    strategies = parse_strategies(strategies)
    seeds = parse_seeds(seeds)
    check_overrides(overrides)
    arms = [Arm.strategy(s) for s in strategies]
    check_configs(config, [[*overrides, *a.overrides] for a in arms])  # before anything is written
    claim_output_dir(out, command, command)
    records, summary = train_arms(
        config, out, arms, seeds, overrides, log=log, jobs=jobs, reuse_from=reuse_from
    )
    files = standard_plots(out, records, summary, colors=colors_for(strategies))
    summary["command"] = command
    summary["strategies"] = strategies
    summary["setup"] = setup_rows(records)
    summary["verdict"] = best_arm_verdict(summary)
    base = summary.get("baseline")
    summary["conclusions"] = [
        paired_sentence(a, base, r[f"diff_vs_{base}"])
        for a, r in summary["runs"].items()
        if base and a != base and f"diff_vs_{base}" in r
    ]
    summary["files"] = {**files, "html": "report.html", "summary": "summary.json"}
    summary["runtime_s"] = round(time.perf_counter() - start, 2)
    title = title or f"compare: {', '.join(strategies)} on {config}"
    sections = [*page_head(summary), *standard_sections(summary, files)]
    return write_study(out, summary, title, sections, html_name="report.html")
