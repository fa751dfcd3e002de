"""What the studies share: the scale they train at, their output folder, and small helpers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossreweight.experiments.summary import fmt_pm

BASE_CONFIG = "tiny"


@dataclass(frozen=True)
class Scale:
    """How big a study's runs are: the base preset plus overrides, the steps, the seeds."""

    overrides: tuple[str, ...]
    steps: int
    seeds: tuple[int, ...]

    def with_steps(self, steps: int, eval_every: int) -> Scale:
        return Scale((*self.overrides, f"train.max_steps={steps}", f"eval.every={eval_every}"), steps, self.seeds)


# Full studies: the tiny preset (1.5M-parameter model, 4k BPE, 16 x 128 tokens per step),
# shortened to 100 steps (a whole warm-up + cosine schedule) to fit a 2-core CPU (about a minute
# per run), evaluated every 20 steps on 32 sequences per domain. Every study uses the same
# settings, so a run that two studies share (e.g. uniform, seed 0) is trained once and copied.
FULL_BASE: tuple[str, ...] = (
    # One thread: on 2 shared cores a second intra-op thread collapses whenever another
    # process runs (measured 400-800 tokens/s instead of 4000); threads do not change results.
    "train.threads=1",
    "eval.max_sequences_per_domain=32",
    "log.every=1",  # weight diagnostics at every step (cheap), and step 1 for the same-batch check
    "log.tensorboard=false",
    "log.progress=false",
    "checkpoint.every=50",
)

# --quick (tests): the scale of tests/train_utils.py, a fraction of a second per run.
QUICK_BASE: tuple[str, ...] = (
    "data.max_chars_per_domain=20000",
    "data.tokenizer.vocab_size=512",
    "data.seq_len=32",
    "model.dim=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "model.multiple_of=32",
    "model.max_seq_len=32",
    "train.batch_size=8",
    "train.lr_warmup_steps=2",
    "train.threads=1",  # tiny matmuls: a second thread only adds contention (tests run 2 workers)
    "eval.batch_size=32",
    "eval.max_sequences_per_domain=8",
    "log.every=1",
    "log.progress=false",
    "log.tensorboard=false",
    "checkpoint.every=0",
)


def full_scale(steps: int, eval_every: int, seeds: Sequence[int], *extra: str) -> Scale:
    return Scale((*FULL_BASE, *extra), steps, tuple(seeds)).with_steps(steps, eval_every)


def quick_scale(seeds: Sequence[int] = (0, 1), steps: int = 8, *extra: str) -> Scale:
    return Scale((*QUICK_BASE, *extra), steps, tuple(seeds)).with_steps(steps, steps // 2)


def study_dir(name: str, out: Path | str | None, quick: bool) -> Path:
    """The default output folder of a study: runs/<name> (runs/<name>-quick with --quick, so
    a quick look never replaces the cached runs of the full study)."""
    if out is not None:
        return Path(out)
    return Path("runs") / (f"{name}-quick" if quick else name)


def diff_text(arm: str, run: dict[str, Any], baseline: str) -> str:
    """One sentence: the paired difference of an arm to the baseline, and how often it wins."""
    d = run.get(f"diff_vs_{baseline}")
    if not d or d["val_loss"]["mean"] is None:
        return f"{arm}: no paired difference to {baseline}"
    n = len(run["seeds"])
    st = d["steps_to_baseline_final"]
    reach = (f"reaches {baseline}'s final loss at step {st['mean']:.0f} on average" if st["reached"] == n
             else f"reaches {baseline}'s final loss on {st['reached']}/{n} seeds")
    return (f"{arm}: val_loss - {baseline} = {fmt_pm(d['val_loss']['mean'], d['val_loss']['std'])} "
            f"(lower on {d['seeds_better']}/{n} seeds; domain average "
            f"{fmt_pm(d['val_loss_domain_avg']['mean'], d['val_loss_domain_avg']['std'])}); {reach}.")
