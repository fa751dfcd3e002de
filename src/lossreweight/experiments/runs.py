"""Cached, resumable training runs: one directory per (variant, seed), trained at most once.

A run directory is *done* when it holds `final.json` and its saved resolved config matches
the config asked for; it is then reused without training. A directory whose config matches
but that has no `final.json` was interrupted: training it again resumes from its newest
checkpoint (the trainer does that by itself). A run is never deleted: when the folder holds a
run with other settings (the study was re-run with changed settings), the new run goes beside
it, in `runs/by-config/<config hash>/<arm>-seed<k>`, and the old one stays where it was.
A new run whose config matches a finished run in a sibling study folder is copied from it
(studies share e.g. uniform at seed 0). Identity is lossreweight.rundir's one "same run" rule:
settings that never change results (logging, checkpoint cadence, CPU threads) are ignored, any
other difference is another result. `jobs` > 1 trains the missing runs
in worker processes side by side.

A run's records are read as the trainer wrote them, under the metric vocabulary
(lossreweight.metric_names: eval/loss, eval/<domain>/loss, train/loss, reweight/<stat>/<domain>,
...); a run written before the vocabulary is converted once, on read, by
`metric_names.from_legacy`, the one legacy reader.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lossreweight.errors import ConfigError, UserError
from lossreweight.metric_names import LOSS, from_legacy
from lossreweight.rundir import (
    CHECKPOINTS_DIR,
    FINAL_FILE,
    RESOLVED_CONFIG,
    TENSORBOARD_DIR,
    TIMING_FILE,
    compare_runs,
    read_final,
    read_metrics,
    read_run_config,
    results_hash,
)
from lossreweight.train import RunConfig, train

BY_CONFIG = "by-config"  # runs/by-config/<hash>/: runs of other settings, beside the first ones

Status = Literal["new", "done", "partial", "stale"]
Log = Callable[[str], None]


@dataclass(frozen=True)
class Arm:
    """One variant of a study: a label and the `key=value` overrides that make it."""

    name: str
    overrides: tuple[str, ...] = ()
    stage: int = 0  # runs train stage by stage (each seed by seed): what to have first if stopped

    @staticmethod
    def strategy(name: str) -> Arm:
        return Arm(name, (f"reweight.strategy={name}",))


@dataclass
class RunRecord:
    """A finished run: where it is, what it ended with, and its metrics records."""

    arm: str
    seed: int
    run_dir: Path
    final: dict[str, Any]  # final.json under the metric vocabulary (eval/loss, ...)
    metrics: list[dict[str, Any]]  # metrics.jsonl records under the metric vocabulary
    status: str  # how this invocation got it: cached, copied, trained, resumed or retrained
    seconds: float  # wall time spent by this invocation (0 when cached or copied)
    batch_checksum: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # as the trainer resolved and saved it
    train_seconds: float | None = None  # how long training took when it ran (any invocation)

    @property
    def evals(self) -> list[dict[str, Any]]:
        """The metrics records that carry a validation evaluation."""
        return [r for r in self.metrics if r.get(LOSS) is not None]


def run_name(arm: str, seed: int) -> str:
    """The run's folder name: `<arm>-seed<k>`, with characters unsafe in a path replaced."""
    safe = re.sub(r"[^A-Za-z0-9._=+-]", "_", arm)
    return f"{safe}-seed{seed}"


def read_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A run's final.json and metrics.jsonl records under the metric vocabulary, as the trainer
    writes them; a run written before it is converted, once, by `metric_names.from_legacy`."""
    return read_final(run_dir) or {}, [from_legacy(r) for r in read_metrics(run_dir)]


# -- identity of a run ----------------------------------------------------------------------
def run_status(run_dir: Path, cfg: RunConfig) -> Status:
    run_dir = Path(run_dir)
    if not (run_dir / RESOLVED_CONFIG).is_file():
        # Interrupted before the trainer wrote its config, or never started.
        return "partial" if (run_dir / CHECKPOINTS_DIR).exists() else "new"
    try:
        saved = read_run_config(run_dir)
    except UserError:  # damaged: never trained over (resolve_run_dir puts a new run beside it)
        return "stale"
    diff = compare_runs(saved, cfg.to_dict())  # a `None` model field matches its resolved value
    if diff.blocking or diff.recovery or diff.resumable:
        return "stale"
    # Done when final.json holds the final evaluation. Without it (an older trainer, resumed at
    # its last step) or damaged, the run is unfinished: resuming evaluates its last checkpoint.
    try:
        finished = LOSS in (read_final(run_dir) or {})
    except UserError:
        finished = False
    return "done" if finished else "partial"


def resolve_run_dir(runs_dir: Path, name: str, cfg: RunConfig) -> Path:
    """Where the run `name` with config `cfg` lives: `runs_dir/name` unless that folder holds
    a run with other settings; then `runs_dir/by-config/<hash>/name`, so re-running a study
    with changed settings trains beside the finished runs instead of replacing them."""
    primary = Path(runs_dir) / name
    if not primary.exists() or run_status(primary, cfg) in ("done", "partial", "new"):
        return primary
    return Path(runs_dir) / BY_CONFIG / results_hash(cfg.to_dict()) / name


# -- running --------------------------------------------------------------------------------
def batch_checksum(cfg: RunConfig) -> str:
    """sha256 (16 hex digits) of the (domain, sequence) indices of every training batch.

    The loader's order is a pure function of the data, seed, batch size, world size and
    mixture, so equal checksums mean two runs were fed the same batches in the same order.
    Single process (world size 1), as the experiments run.
    """
    from lossreweight.data import prepare_data

    data = prepare_data(cfg.data, progress=False)
    loader = data.train_loader(cfg.train.batch_size, seed=cfg.train.seed, mixture=cfg.data.mixture)
    h = hashlib.sha256()
    for g in range(cfg.train.max_steps * cfg.train.grad_accum):
        domains, local = loader.indices(g)
        h.update(domains.astype("int64").tobytes())
        h.update(local.astype("int64").tobytes())
    return h.hexdigest()[:16]


def find_finished(cfg: RunConfig, roots: Sequence[Path], *, exclude: Path) -> Path | None:
    """A finished run of the same config in another study folder: `<root>/*/runs/*`."""
    for root in roots:
        for cand in sorted(Path(root).glob("*/runs/*")):
            if cand.name.endswith(".copying") or cand.resolve() == exclude.resolve():
                continue
            if not (cand / FINAL_FILE).is_file():
                continue
            if run_status(cand, cfg) == "done":
                return cand
    return None


def _copy_run(src: Path, dst: Path) -> None:
    # Checkpoints are left behind: a finished run never resumes, and a changed one retrains.
    tmp = dst.with_name(dst.name + ".copying")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(CHECKPOINTS_DIR, TENSORBOARD_DIR))
    tmp.replace(dst)


def ensure_run(
    cfg: RunConfig,
    run_dir: Path,
    *,
    arm: str = "",
    seed: int | None = None,
    log: Log | None = None,
    reuse_from: Sequence[Path] = (),
) -> RunRecord:
    """Train `cfg` into `run_dir` unless a finished run of the same config is there already
    (or, for a new run, in another study folder under one of `reuse_from`: then it is copied)."""
    run_dir = Path(run_dir)
    status = run_status(run_dir, cfg) if run_dir.exists() else "new"
    say = log or (lambda _msg: None)
    label = run_dir.name
    seconds = 0.0
    source = (
        find_finished(cfg, reuse_from, exclude=run_dir) if status == "new" and reuse_from else None
    )
    if source is not None:
        _copy_run(source, run_dir)
        status = "copied"
        say(f"{label}: copied from {source} (same config)")
    if status == "copied":
        how = "copied"
    elif status == "done":
        how = "cached"
        say(f"{label}: cached (finished run with the same config)")
    else:
        if status == "stale":  # never replace a run: resolve_run_dir puts new settings beside it
            raise ConfigError(
                f"{run_dir} holds a run with other settings; choose another --out, or move that "
                "run away to train these settings there"
            )
        how = {"new": "trained", "partial": "resumed"}[status]
        if status == "partial":
            say(f"{label}: resuming an interrupted run")
        else:
            say(f"{label}: training {cfg.train.max_steps} steps")
        start = time.perf_counter()
        result = train(cfg, run_dir)
        seconds = time.perf_counter() - start
        _add_train_time(run_dir, seconds, fresh=status != "partial")
        if result.interrupted:
            raise KeyboardInterrupt  # stopped by a signal: checkpoint saved, re-run resumes
    final, metrics = read_run(run_dir)
    record = RunRecord(
        arm=arm or label,
        seed=cfg.train.seed if seed is None else seed,
        run_dir=run_dir,
        final=final,
        metrics=metrics,
        status=how,
        seconds=seconds,
        batch_checksum=batch_checksum(cfg),
        config=read_run_config(run_dir),
        train_seconds=_read_train_time(run_dir),
    )
    if how not in ("cached", "copied"):
        say(f"{label}: {how} in {seconds:.1f} s, {LOSS} {final.get(LOSS, float('nan')):.4f}")
    return record


def _read_train_time(run_dir: Path) -> float | None:
    try:
        return float(json.loads((run_dir / TIMING_FILE).read_text())["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _add_train_time(run_dir: Path, seconds: float, *, fresh: bool) -> None:
    """Record training wall time next to the run, so cached reports still show the cost
    (a resumed run adds its time to the interrupted part's)."""
    before = 0.0 if fresh else (_read_train_time(run_dir) or 0.0)
    (run_dir / TIMING_FILE).write_text(json.dumps({"seconds": round(before + seconds, 2)}))


def _each_data(cfgs: Iterable[RunConfig]) -> list[Any]:
    """Each distinct `data:` setting of the configs, once."""
    return list(
        {json.dumps(c.data.model_dump(mode="json"), sort_keys=True): c.data for c in cfgs}.values()
    )


def check_configs(base: str | Path, overrides: Sequence[Sequence[str]]) -> None:
    """Load every run's config and check its corpus sources are installed, before anything is
    written: a typo or a missing corpus package fails in one line with the output untouched."""
    from lossreweight.data.corpus import Corpus
    from lossreweight.train import load_config

    for data in _each_data(load_config(base, [*ov, "train.seed=0"]) for ov in overrides):
        Corpus.from_config(data)


@dataclass
class _Planned:
    """One run of a study's plan: an arm at a seed, its config and where it lives."""

    arm: Arm
    seed: int
    overrides: list[str]
    cfg: RunConfig
    run_dir: Path

    @property
    def done(self) -> bool:
        return self.run_dir.exists() and run_status(self.run_dir, self.cfg) == "done"


def run_arms(
    base: str | Path,
    base_overrides: Sequence[str],
    arms: Sequence[Arm],
    seeds: Sequence[int],
    runs_dir: Path,
    *,
    log: Log | None = None,
    reuse_from: Sequence[Path] = (),
    jobs: int = 1,
    train_missing: bool = True,
) -> dict[str, dict[int, RunRecord]]:
    """Every arm at every seed, each in `runs_dir/<arm>-seed<k>`; cached runs are reused.

    An arm's overrides come after the base overrides, then `train.seed=k`; so within a seed
    every arm has the same model init and (with the same data settings) the same batches.
    Configs are all validated before anything trains, so a typo fails at once. Runs go stage
    by stage and seed by seed (every arm of seed 0 first), so an interrupted study has whole
    seeds to report. A new run whose config matches a finished run in another study folder
    under `reuse_from` is copied. `jobs` > 1 trains the missing runs in that many processes
    side by side. `train_missing=False` trains nothing: it returns the seeds where the first
    arm (the baseline) is finished, each arm at those of them where it is finished too.
    """
    from lossreweight.train import load_config

    folders = [run_name(a.name, 0) for a in arms]
    if len(set(folders)) != len(folders):
        raise ConfigError(f"arm names {[a.name for a in arms]} do not give distinct run folders")
    plan: list[_Planned] = []
    for stage, seed in sorted({(a.stage, s) for a in arms for s in seeds}):
        for arm in (a for a in arms if a.stage == stage):
            ov = [*base_overrides, *arm.overrides, f"train.seed={seed}"]
            cfg = load_config(base, ov)
            where = resolve_run_dir(runs_dir, run_name(arm.name, seed), cfg)
            plan.append(_Planned(arm, seed, ov, cfg, where))
    if not train_missing:
        finished = [p for p in plan if p.done]
        paired = {p.seed for p in finished if p.arm.name == arms[0].name}
        if not paired:
            raise ConfigError(
                f"no finished {arms[0].name} run in {runs_dir} yet; run the study without "
                "--no-train"
            )
        plan = [p for p in finished if p.seed in paired]
    elif jobs > 1 and (todo := [p for p in plan if not p.done]):
        from lossreweight.data import prepare_data

        # Prepared here, once, before workers start: parallel workers would race for the
        # prepared-data folder (it admits one writer at a time).
        for data in _each_data(p.cfg for p in todo):
            prepare_data(data, progress=False)
        if log is not None:
            log(f"training {len(todo)} runs in {min(jobs, len(todo))} processes")
        jobs_todo = [(p.overrides, p.run_dir, f"[{p.arm.name} seed {p.seed}] ") for p in todo]
        train_in_parallel(base, jobs_todo, jobs, reuse_from)
    out: dict[str, dict[int, RunRecord]] = {arm.name: {} for arm in arms}
    for i, p in enumerate(plan, 1):
        prefix = f"[{i}/{len(plan)}] "
        say = None if log is None else (lambda m, pre=prefix: log(pre + m))
        if say is not None and p.run_dir.parent != Path(runs_dir) and not p.run_dir.exists():
            say(
                f"{run_name(p.arm.name, p.seed)}: its folder holds a run with other settings "
                f"(kept); training these settings in {p.run_dir}"
            )
        out[p.arm.name][p.seed] = ensure_run(
            p.cfg, p.run_dir, arm=p.arm.name, seed=p.seed, log=say, reuse_from=reuse_from
        )
    return {a: r for a, r in out.items() if r}  # (--no-train leaves out arms not finished yet)


# -- training in several processes (--jobs N) ---------------------------------------------
# Each worker trains whole runs, one at a time, from a shared queue; the parent then reads
# every run back from disk (cached), so the summary is the same as a one-process run. Workers
# start with `spawn` (a clean interpreter: no torch state forked mid-use).


class WorkerStopped(RuntimeError):
    """A worker's run was stopped by a signal (its checkpoint is saved; a re-run resumes)."""


_STOPPED = False  # in a worker: a signal stopped one of its runs, so it starts no other


def _train_one(base: str, overrides: list[str], run_dir: str, label: str, reuse: list[str]) -> None:
    from lossreweight.train import load_config

    global _STOPPED
    if _STOPPED:
        raise WorkerStopped(f"{label.strip()} not started: the study is stopping")
    cfg = load_config(base, overrides)
    try:
        ensure_run(
            cfg,
            Path(run_dir),
            log=lambda msg: print(f"{label}{msg}", flush=True),
            reuse_from=[Path(p) for p in reuse],
        )
    except KeyboardInterrupt:  # a plain exception reaches the parent, which stops the pool
        _STOPPED = True
        raise WorkerStopped(
            f"{label.strip()} stopped by a signal; its checkpoint is saved"
        ) from None


def train_in_parallel(
    base: str | Path,
    todo: Sequence[tuple[list[str], Path, str]],
    jobs: int,
    reuse_from: Sequence[Path] = (),
) -> None:
    """Train every (overrides, run_dir, label) of `todo` with `jobs` worker processes."""
    sys.stdout.flush()
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=ctx)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    reuse = [str(p) for p in reuse_from]
    try:
        futures = [
            pool.submit(_train_one, str(base), list(ov), str(d), label, reuse)
            for ov, d, label in todo
        ]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        errors = [f.exception() for f in done if f.exception() is not None]
        if errors:
            _stop(pool)
            if all(isinstance(e, WorkerStopped) for e in errors):
                raise KeyboardInterrupt
            raise errors[0]
    except KeyboardInterrupt:
        _stop(pool)  # every worker checkpoints its run and exits; nothing new starts
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        pool.shutdown(wait=True, cancel_futures=True)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and ask the running workers to stop (SIGTERM: the trainer
    saves a checkpoint and returns)."""
    for pid in list(getattr(pool, "_processes", {}) or {}):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    pool.shutdown(wait=False, cancel_futures=True)
