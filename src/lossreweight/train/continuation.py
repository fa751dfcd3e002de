"""Continuing a run: `train.max_steps` raised on a run that has a checkpoint (nanoGPT's habit).

A run's schedules (the lr warm-up and cosine decay, the burn-in when given as a fraction) are
laid out over `train.schedule_steps`, which the run's first start resolves to its max_steps
and stores in the run's resolved config. A continuation keeps that length, so the warm-ups
are not redone and the cosine decay, which ended there, stays at its floor; the console says
so when the run resumes.
"""

from __future__ import annotations

from pathlib import Path

from lossreweight.config import RunConfig
from lossreweight.rundir import find_latest_checkpoint, read_saved_config
from lossreweight.train.optim import lr_at


def resolve_schedule(cfg: RunConfig, run_dir: str | Path) -> RunConfig:
    """`cfg` with train.schedule_steps resolved: as given; else the length the run stored,
    when it has a checkpoint to go on from; else train.max_steps (a fresh start)."""
    if cfg.train.schedule_steps is not None:
        return cfg
    length = cfg.train.max_steps
    if find_latest_checkpoint(run_dir) is not None:
        train = (read_saved_config(run_dir) or {}).get("train") or {}
        # A run saved before schedule_steps existed was laid out over its first max_steps.
        stored = train.get("schedule_steps") or train.get("max_steps")
        if isinstance(stored, int) and stored >= 1:
            length = stored
    out = cfg.model_copy(deep=True)
    out.train.schedule_steps = length
    return out


def continuation_note(cfg: RunConfig, step: int) -> str | None:
    """How the schedule goes on from `step` when the run resumes with a max_steps other than
    the length its schedules were laid out over; None when they agree or nothing is left."""
    t = cfg.train
    length, end = t.schedule_length, t.max_steps
    if end == length or step >= end:
        return None
    if end < length:
        return (
            f"training to step {end} of a schedule laid out over {length} steps "
            f"(train.schedule_steps): the lr ends at {lr_at(end - 1, t):.3g}, not its floor"
        )
    floor = t.lr * t.min_lr_ratio
    decay = (
        f"the cosine decay ended at step {length}, so the lr stays at its floor {floor:.3g} "
        f"for steps {step + 1}-{end}"
        if step >= length
        else f"the cosine decay still ends at step {length}, then the lr stays at its floor "
        f"{floor:.3g} to step {end}"
    )
    return (
        f"continuing from step {step} to {end} on the schedule laid out over the first "
        f"{length} steps (train.schedule_steps={length}): lr warm-up {t.lr_warmup} steps and "
        f"burn-in {cfg.burn_in_steps} steps are not redone; {decay}"
    )
