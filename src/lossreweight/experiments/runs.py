"""Cached, resumable training runs: one directory per (variant, seed), trained at most once.

A run directory is *done* when it holds `final.json` and its saved resolved config matches
the config asked for; it is then reused without training. A directory whose config matches
but that has no `final.json` was interrupted: training it again resumes from its newest
checkpoint (the trainer does that by itself). A directory trained with other settings is
*stale*: it is removed and trained afresh, so a cache hit always means the same results.
A new run whose config matches a finished run in a sibling study folder is copied from it
(studies share e.g. uniform at seed 0). Identity ignores settings that never change results
(IGNORED_KEYS: logging, checkpoint cadence, CPU threads).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lossreweight.errors import ConfigError
from lossreweight.model.run_dir import RESOLVED_CONFIG
from lossreweight.train import RunConfig, train
from lossreweight.train.loop import FINAL_FILE
from lossreweight.train.metrics import read_metrics

TIMING_FILE = "train_time.json"  # wall seconds of the training that produced the run
# Settings that never change what a run computes, so a cached run with other values of them
# is still the same run (where logs go, how often checkpoints are written, CPU threads).
IGNORED_KEYS: tuple[str, ...] = ("log", "checkpoint", "train.threads", "data.cache_dir")
# Files that mark a directory as a run of ours (safe to remove when stale).
_RUN_MARKERS = (RESOLVED_CONFIG, "metrics.jsonl", "checkpoints", FINAL_FILE, "config.yaml")

Status = Literal["new", "done", "partial", "stale"]
Log = Callable[[str], None]


@dataclass(frozen=True)
class Arm:
    """One variant of a study: a label and the `key=value` overrides that make it."""

    name: str
    overrides: tuple[str, ...] = ()

    @staticmethod
    def strategy(name: str) -> Arm:
        return Arm(name, (f"reweight.strategy={name}",))


@dataclass
class RunRecord:
    """A finished run: where it is, what it ended with, and its metrics records."""

    arm: str
    seed: int
    run_dir: Path
    final: dict[str, Any]
    metrics: list[dict[str, Any]]
    status: str  # how this invocation got it: cached, copied, trained, resumed or retrained
    seconds: float  # wall time spent by this invocation (0 when cached or copied)
    batch_checksum: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    train_seconds: float | None = None  # how long training took when it ran (any invocation)

    @property
    def evals(self) -> list[dict[str, Any]]:
        """The metrics records that carry a validation evaluation."""
        return [r for r in self.metrics if r.get("val_loss") is not None]


def run_name(arm: str, seed: int) -> str:
    """The run's folder name: `<arm>-seed<k>`, with characters unsafe in a path replaced."""
    safe = re.sub(r"[^A-Za-z0-9._=+-]", "_", arm)
    return f"{safe}-seed{seed}"


# -- identity of a run ----------------------------------------------------------------------
def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        # A temperature schedule or a mixture is one value, compared whole.
        if isinstance(v, dict) and key not in ("reweight.temperature", "data.mixture"):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _ignored(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in IGNORED_KEYS)


def config_differences(saved: dict[str, Any], cfg: RunConfig) -> list[str]:
    """Keys whose value in the saved resolved config differs from `cfg` (ignoring IGNORED_KEYS).

    The trainer resolves `None` model fields (vocab size, kv heads, ffn width) from the data
    and writes them out; a `None` asked for matches whatever it was resolved to.
    """
    want, have = _flatten(cfg.to_dict()), _flatten(saved)
    diff = []
    for key in sorted(set(want) | set(have)):
        if _ignored(key):
            continue
        if key not in want and key.startswith("model."):
            continue  # resolved extras the trainer adds (e.g. an hf model's config)
        a, b = want.get(key), have.get(key)
        if a is None and key.startswith("model.") and key in have:
            continue
        if a != b:
            diff.append(key)
    return diff


def config_hash(cfg: RunConfig) -> str:
    """A short fingerprint of everything that changes a run's results."""
    flat = {k: v for k, v in _flatten(cfg.to_dict()).items() if not _ignored(k)}
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:12]


def run_status(run_dir: Path, cfg: RunConfig) -> Status:
    run_dir = Path(run_dir)
    saved_path = run_dir / RESOLVED_CONFIG
    if not saved_path.is_file():
        # Interrupted before the trainer wrote its config, or never started.
        return "partial" if (run_dir / "checkpoints").exists() else "new"
    try:
        saved = json.loads(saved_path.read_text())
    except (OSError, ValueError):
        return "stale"
    if config_differences(saved, cfg):
        return "stale"
    return "done" if (run_dir / FINAL_FILE).is_file() else "partial"


def _remove_stale(run_dir: Path) -> None:
    if not any((run_dir / m).exists() for m in _RUN_MARKERS) and any(run_dir.iterdir()):
        raise ConfigError(
            f"{run_dir} exists and is not a training run; remove it or choose another --out"
        )
    shutil.rmtree(run_dir)


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
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
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
    source = find_finished(cfg, reuse_from, exclude=run_dir) if status == "new" and reuse_from else None
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
        how = {"new": "trained", "partial": "resumed", "stale": "retrained"}[status]
        if status == "stale":
            say(f"{label}: settings changed since it was trained; retraining from scratch")
            _remove_stale(run_dir)
        elif status == "partial":
            say(f"{label}: resuming an interrupted run")
        else:
            say(f"{label}: training {cfg.train.max_steps} steps")
        start = time.perf_counter()
        result = train(cfg, run_dir)
        seconds = time.perf_counter() - start
        _add_train_time(run_dir, seconds, fresh=status != "partial")
        if result.interrupted:
            raise KeyboardInterrupt  # stopped by a signal: checkpoint saved, re-run resumes
    final = json.loads((run_dir / FINAL_FILE).read_text())
    if "val_loss" not in final:
        final = _complete_final(run_dir, final)
    record = RunRecord(
        arm=arm or label,
        seed=cfg.train.seed if seed is None else seed,
        run_dir=run_dir,
        final=final,
        metrics=read_metrics(run_dir),
        status=how,
        seconds=seconds,
        batch_checksum=batch_checksum(cfg),
        config=cfg.to_dict(),
        train_seconds=_read_train_time(run_dir),
    )
    if how not in ("cached", "copied"):
        say(f"{label}: {how} in {seconds:.1f} s, val_loss {final.get('val_loss', float('nan')):.4f}")
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


def _complete_final(run_dir: Path, final: dict[str, Any]) -> dict[str, Any]:
    """Workaround: a run resumed from a checkpoint taken at its last step trains no step, so the
    trainer writes final.json without the final evaluation; evaluate that checkpoint here."""
    from lossreweight.train.evaluate_run import evaluate_run

    ev = evaluate_run(run_dir)
    final = {**final, **{k: v for k, v in ev.items() if k not in ("checkpoint", "step")}}
    (run_dir / FINAL_FILE).write_text(json.dumps(final, indent=1))
    return final


def run_arms(
    base: str | Path,
    base_overrides: Sequence[str],
    arms: Sequence[Arm],
    seeds: Sequence[int],
    runs_dir: Path,
    *,
    log: Log | None = None,
    reuse_from: Sequence[Path] = (),
) -> dict[str, dict[int, RunRecord]]:
    """Every arm at every seed, each in `runs_dir/<arm>-seed<k>`; cached runs are reused.

    An arm's overrides come after the base overrides, then `train.seed=k`; so within a seed
    every arm has the same model init and (with the same data settings) the same batches.
    Configs are all validated before anything trains, so a typo fails at once. A new run whose
    config matches a finished run in another study folder under `reuse_from` is copied.
    """
    from lossreweight.train import load_config

    plan: list[tuple[Arm, int, RunConfig]] = []
    for arm in arms:
        for seed in seeds:
            cfg = load_config(base, [*base_overrides, *arm.overrides, f"train.seed={seed}"])
            plan.append((arm, seed, cfg))
    folders = [run_name(a.name, 0) for a in arms]
    if len(set(folders)) != len(folders):
        raise ConfigError(f"arm names {[a.name for a in arms]} do not give distinct run folders")
    out: dict[str, dict[int, RunRecord]] = {arm.name: {} for arm in arms}
    for i, (arm, seed, cfg) in enumerate(plan, 1):
        prefix = f"[{i}/{len(plan)}] "
        say = None if log is None else (lambda m, p=prefix: log(p + m))
        out[arm.name][seed] = ensure_run(
            cfg, runs_dir / run_name(arm.name, seed), arm=arm.name, seed=seed, log=say,
            reuse_from=reuse_from,
        )
    return out
