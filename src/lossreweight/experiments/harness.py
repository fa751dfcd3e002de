"""One harness for every study: a study says what to train and what to report; this runs it.

A study (one module in `experiments/studies/`) subclasses `Study` and implements `plan` (its
arms, seeds and settings) and, where it needs to, the hooks `extend` (its own numbers),
`plots`, `sections` and `verdict`. `Study.run` does the rest, the same way for every study:

1. claims the output folder (refusing another command's or a stranger's folder: a marker file
   names the command and study that wrote it);
2. trains every arm at every seed on shared batches (cached, resumable, never deleted: see
   `runs`), copying runs that a sibling study already finished;
3. summarises: per-arm means over seeds, paired differences to the baseline per seed with a
   95% t-interval across seeds, steps to the baseline's final loss (`stats`);
4. draws the standard plots plus the study's own, and writes index.html and summary.json,
   opening with the verdict in one sentence and a setup table (`page`).

`lossreweight compare` and `lossreweight demo` are studies too (`experiments.compare`). A
study that trains no language model (linreg) overrides `run` and uses only the page parts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from lossreweight.errors import ConfigError
from lossreweight.experiments.page import PAGE_FILE, SUMMARY_FILE, Section, page_head, write_study
from lossreweight.experiments.runs import Arm, Log, check_configs, run_arms
from lossreweight.experiments.scales import BASE_CONFIG
from lossreweight.experiments.stats import (
    Records,
    excludes_zero,
    fmt_ci,
    regime_text,
    setup_rows,
    summarize,
)
from lossreweight.rundir import is_run_dir
from lossreweight.safe_files import atomic_write, read_manifest, remove_listed


@dataclass(frozen=True)
class Plan:
    """What a study trains: arms x seeds, each arm's overrides after the shared ones."""

    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]
    overrides: tuple[str, ...] = ()
    config: str | Path = BASE_CONFIG  # a preset name or a YAML file (studies: the tiny preset)
    baseline: str | None = "uniform"
    # arm -> group: arms of one group must see the same batches (default: all arms one group).
    batch_groups: Mapping[str, str] | None = None
    # arm -> the arm it is paired with (default: `baseline`), e.g. uniform at the same model size.
    paired_to: Mapping[str, str] | None = None
    notes: dict[str, Any] = field(default_factory=dict)  # study-specific settings for summary.json


@dataclass
class Context:
    """One invocation of a study."""

    out: Path
    quick: bool
    log: Log | None
    plan: Plan
    jobs: int = 1  # training processes side by side
    train_missing: bool = True  # False: report the seeds already finished, train nothing
    start: float = field(default_factory=time.perf_counter)


class Study:
    """The interface every study implements; the defaults fit an arm comparison vs uniform."""

    name: str = ""
    title: str = ""
    kind: ClassVar[str] = "experiment"  # the command that runs it, named in the folder's marker
    reuse_siblings: ClassVar[bool] = True  # copy finished runs of sibling study folders
    metric: ClassVar[str] = "val_loss"  # what the verdict compares (a key of the paired diffs)
    metric_label: ClassVar[str] = "validation loss"

    def plan(self, quick: bool) -> Plan:
        raise NotImplementedError

    def train(self, ctx: Context) -> Records:
        p = ctx.plan
        return run_arms(
            p.config,
            list(p.overrides),
            list(p.arms),
            p.seeds,
            ctx.out / "runs",
            log=ctx.log,
            reuse_from=[ctx.out.parent] if self.reuse_siblings else [],
            jobs=ctx.jobs,
            train_missing=ctx.train_missing,
        )

    def extend(self, ctx: Context, records: Records, summary: dict[str, Any]) -> None:
        """Add the study's own numbers to `summary` (default: nothing)."""

    def plots(self, ctx: Context, records: Records, summary: dict[str, Any]) -> dict[str, str]:
        from lossreweight.experiments.plots import colors_for, standard_plots

        return standard_plots(
            ctx.out, records, summary, colors=colors_for(list(records)), baseline=ctx.plan.baseline
        )

    def conclusions(self, ctx: Context, summary: dict[str, Any]) -> list[str]:
        base = summary.get("baseline")
        if not base:
            return []
        return [
            paired_sentence(
                arm,
                r.get("paired_with", base),
                r[f"diff_vs_{base}"],
                self.metric,
                self.metric_label,
            )
            for arm, r in summary["runs"].items()
            if arm != r.get("paired_with", base) and f"diff_vs_{base}" in r
        ]

    def verdict(self, ctx: Context, summary: dict[str, Any]) -> str:
        return best_arm_verdict(summary, self.metric, self.metric_label)

    def sections(
        self, ctx: Context, summary: dict[str, Any], files: dict[str, str]
    ) -> list[Section]:
        from lossreweight.experiments.page import standard_sections

        return standard_sections(summary, files)

    # -- the pipeline: the same for every study -------------------------------------------
    def run(
        self,
        out: Path,
        *,
        quick: bool = False,
        log: Log | None = None,
        jobs: int = 1,
        train_missing: bool = True,
    ) -> dict[str, Any]:
        """Claim `out`, train, summarise, plot, write the page and summary.json; returns the
        summary. `jobs`: training processes side by side; `train_missing=False` (--no-train)
        reports the seeds already finished and trains nothing."""
        out = Path(out)
        plan = self.plan(quick)  # a bad plan fails before the folder is touched
        names = [a.name for a in plan.arms]
        if len(set(names)) != len(names):
            raise ConfigError(f"arm names must be distinct, got {names}")
        check_configs(plan.config, [[*plan.overrides, *a.overrides] for a in plan.arms])
        owned = claim_output_dir(out, self.kind, self.name)
        ctx = Context(out, quick, log, plan, jobs=jobs, train_missing=train_missing)
        records = self.train(ctx)
        summary = summarize(
            records, baseline=plan.baseline, batch_groups=plan.batch_groups, pairs=plan.paired_to
        )
        summary.update(
            {
                "study": self.name,
                "command": self.kind,
                "quick": quick,
                "complete": all(set(records.get(a, {})) == set(plan.seeds) for a in names),
                "planned_seeds": list(plan.seeds),
                "config": str(plan.config),
                "overrides": list(plan.overrides),
                "arm_overrides": {a.name: list(a.overrides) for a in plan.arms},
                "steps": _common_steps(summary),
                "setup": setup_rows(records),
                **plan.notes,
            }
        )
        self.extend(ctx, records, summary)
        files = self.plots(ctx, records, summary)
        summary["verdict"] = self.verdict(ctx, summary)
        if not summary["complete"]:
            done = sum(len(v) for v in records.values())
            short = ", ".join(a for a in names if len(records.get(a, {})) < len(plan.seeds))
            summary["verdict"] = (
                f"Partial result ({done} of {len(plan.arms) * len(plan.seeds)} runs finished; "
                f"short of seeds: {short}): {summary['verdict']}"
            )
        summary["conclusions"] = self.conclusions(ctx, summary)
        summary["files"] = {**files, "html": PAGE_FILE, "summary": "summary.json"}
        summary["runtime_s"] = round(time.perf_counter() - ctx.start, 2)
        sections = [*page_head(summary), *self.sections(ctx, summary, files)]
        written = write_study(out, summary, self.title or self.name, sections)
        files = {f for f in summary["files"].values() if isinstance(f, str) and "/" not in f}
        finish_output_dir(out, self.kind, self.name, owned, files)
        return written


def _common_steps(summary: Mapping[str, Any]) -> int | list[Any] | None:
    steps = {str(r["steps"]): r["steps"] for r in summary["runs"].values()}
    return next(iter(steps.values())) if len(steps) == 1 else list(steps.values())


# -- sentences ------------------------------------------------------------------------------
def paired_sentence(
    arm: str,
    base: str,
    diff: Mapping[str, Any],
    metric: str = "val_loss",
    label: str = "validation loss",
) -> str:
    """arm - base on `metric` with its interval, seeds better, and steps to base's final."""
    d = diff.get(metric) or {}
    n = len(d.get("per_seed") or [])
    if d.get("mean") is None:
        return f"{arm}: no paired difference to {base} on {label}"
    ex = excludes_zero(d)
    ci = (
        ""
        if ex is None
        else (" (the 95% interval excludes 0)" if ex else " (the 95% interval includes 0)")
    )
    text = (
        f"{arm} - {base}, {label}: {fmt_ci(d)} nats over {n} seed{'s' * (n != 1)}{ci}; "
        f"lower on {_seeds_lower(d)}/{n} seeds"
    )
    st = diff.get("steps_to_baseline_final")
    if st and metric == "val_loss":
        reach = (
            f"reaches {base}'s final val loss at step {st['mean']:.0f} on average"
            if st.get("mean") is not None and st["reached"] == n
            else f"reaches {base}'s final val loss on {st['reached']}/{n} seeds"
        )
        text += f"; {reach}"
    return text + "."


def _seeds_lower(d: Mapping[str, Any]) -> int:
    return sum(1 for v in d.get("per_seed") or [] if v is not None and v < 0)


def best_arm_verdict(
    summary: Mapping[str, Any],
    metric: str = "val_loss",
    label: str = "validation loss",
    arms: Sequence[str] | None = None,
) -> str:
    """One sentence: the arm with the lowest mean paired difference to the baseline, by how
    much, its 95% interval, whether the interval excludes zero, and the regime."""
    base = summary.get("baseline")
    regime = regime_text(summary.get("setup") or [])
    if not base:
        return f"No baseline among the arms, so no paired verdict ({regime})."
    cands = []
    for arm, r in summary["runs"].items():
        d = (r.get(f"diff_vs_{base}") or {}).get(metric) or {}
        if arm != base and (arms is None or arm in arms) and d.get("mean") is not None:
            cands.append((d["mean"], arm, d))
    if not cands:
        return f"No arm has a paired difference to {base} ({regime})."
    m, arm, d = min(cands)
    n = len(d["per_seed"])
    if d.get("ci95"):
        lo, hi = d["ci95"]
        sure = "excludes zero" if excludes_zero(d) else "includes zero, so the sign is not resolved"
        interval = f"95% interval [{lo:+.4f}, {hi:+.4f}] across {n} seeds, which {sure}"
    else:
        interval = "one seed, so no interval"
    if m < 0:
        return (
            f"{arm} ends with a lower {label} than {base} by {-m:.4f} nats ({interval}), {regime}."
        )
    return (
        f"No arm beats {base}: the closest, {arm}, ends with a {label} higher by {m:.4f} nats "
        f"({interval}), {regime}."
    )


# -- the output folder ------------------------------------------------------------------
MARKER = ".lossreweight-output.json"


def _describe(owner: dict[str, Any]) -> str:
    kind, name = owner.get("kind"), owner.get("name")
    return f"`lossreweight {kind} {name}`" if kind == "experiment" else f"`lossreweight {kind}`"


def _legacy(out: Path) -> tuple[dict[str, Any] | None, set[str]]:
    """The one reader of a folder from before markers named their owner and files: who wrote
    it and what, from its summary.json (compare's page was then report.html)."""
    try:
        s = json.loads((out / SUMMARY_FILE).read_text())
        title = str((s.get("report") or {}).get("title", ""))
        files = {f for f in (s.get("files") or {}).values() if isinstance(f, str) and "/" not in f}
    except (OSError, ValueError, AttributeError):
        return None, set()
    kind, study = s.get("command"), s.get("study")
    if kind == "demo" or (kind == "compare" and title.startswith("demo")):
        kind = "demo"
    owner = {"kind": kind, "name": kind} if kind in ("demo", "compare") else None
    if owner is None and isinstance(study, str):
        owner = {"kind": "experiment", "name": study}
    return owner, {SUMMARY_FILE, *files}


def read_owner(out: Path) -> dict[str, Any] | None:
    """Who wrote `out` (kind and name), or None if no lossreweight command did."""
    try:
        owner = json.loads((Path(out) / MARKER).read_text())
    except (OSError, ValueError):
        return _legacy(Path(out))[0]
    return owner if isinstance(owner, dict) else None


# What a study writes at the top of its folder; a user's file of these kinds there is refused,
# so that no page or plot ever replaces it.
_OUTPUT_SUFFIXES = (".png", ".html", ".json")


def claim_output_dir(out: Path, kind: str, name: str) -> set[str]:
    """Make `out` the output folder of `kind` (experiment, compare, demo) `name`, or refuse;
    returns the files an earlier run of it wrote there (its own, replaced freely).

    Accepted: a missing or empty folder, or one this same command and study wrote before
    (re-running reuses its finished runs; a user's notes beside them stay). Refused, before
    anything is written: a training run, another command's or study's output, a non-empty
    folder that no lossreweight command wrote, or a .png/.html/.json file it did not write.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; give a new or empty folder")
    owned: set[str] = set()
    if out.is_dir():
        if is_run_dir(out):
            raise ConfigError(
                f"--out {out} is a training run; give a new or empty folder (nothing was written)"
            )
        owner = read_owner(out)
        if owner is not None:
            if (owner.get("kind"), owner.get("name")) != (kind, name):
                raise ConfigError(
                    f"--out {out} holds the output of {_describe(owner)}; give another folder "
                    "(nothing was written)"
                )
        elif any(out.iterdir()):
            raise ConfigError(
                f"--out {out} is not empty and was not written by lossreweight; give a new or "
                "empty folder (nothing was written)"
            )
        listed = read_manifest(out, MARKER)  # the files an earlier run of it wrote there
        owned = listed if listed is not None else _legacy(out)[1]
        theirs = sorted(
            p.name
            for p in out.iterdir()
            if p.name not in owned and p.name != MARKER and p.suffix in _OUTPUT_SUFFIXES
        )
        if theirs:
            more = f" (and {len(theirs) - 1} more)" if len(theirs) > 1 else ""
            raise ConfigError(
                f"--out {out} holds {theirs[0]}{more}, which lossreweight did not write, where it "
                "writes its pages and plots; move it away or give another folder (nothing was "
                "written)"
            )
    out.mkdir(parents=True, exist_ok=True)
    _write_marker(out, kind, name, owned)
    return owned


def finish_output_dir(out: Path, kind: str, name: str, owned: set[str], written: set[str]) -> None:
    """After a run wrote `written`: remove what an earlier run of it wrote and this one did
    not (e.g. an old plot, or compare's report.html from before index.html), nothing else,
    and list the new files in the marker."""
    remove_listed(out, owned - written - {MARKER})
    _write_marker(out, kind, name, written)


def _write_marker(out: Path, kind: str, name: str, files: set[str]) -> None:
    body = {"kind": kind, "name": name, "files": sorted(files)}  # files: read_manifest's key
    atomic_write(out / MARKER, (json.dumps(body) + "\n").encode())
