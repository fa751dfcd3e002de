"""The scales the studies train at (the base preset plus overrides, steps, seeds) and their
default output folders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BASE_CONFIG = "tiny"


@dataclass(frozen=True)
class Scale:
    """How big a study's runs are: the base preset plus overrides, the steps, the seeds."""

    overrides: tuple[str, ...]
    steps: int
    seeds: tuple[int, ...]

    def with_steps(self, steps: int, eval_every: int) -> Scale:
        return Scale(
            (*self.overrides, f"train.max_steps={steps}", f"eval.every={eval_every}"),
            steps,
            self.seeds,
        )


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

# --quick (tests): the scale of tests/train_utils.py, a fraction of a second per run; the
# protocol's quick runs (`paper_setup`) take these settings with their own model sizes.
QUICK_RUN: tuple[str, ...] = (
    "data.max_chars_per_domain=20000",
    "data.tokenizer.vocab_size=512",
    "data.seq_len=32",
    "model.max_seq_len=32",
    "train.batch_size=8",
    "train.threads=1",  # tiny matmuls: a second thread only adds contention (tests run 2 workers)
    "eval.batch_size=32",
    "eval.max_sequences_per_domain=8",
    "log.every=1",
    "log.progress=false",
    "log.tensorboard=false",
    "checkpoint.every=0",
)
QUICK_BASE: tuple[str, ...] = (
    *QUICK_RUN,
    "model.dim=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "model.multiple_of=32",
    "train.lr_warmup_steps=2",
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


# -- the paper's regime ----------------------------------------------------------------------
# The GPT-2 code's protocol (issue 10), scaled by its ratios: ~2.6 training tokens per
# parameter (20,000 steps x 32 x 512 tokens for 124M), reweighting after a uniform burn-in of
# 5% of the steps, lr warm-up 2.5%, AdamW, cosine decay to 0.2x, weight decay 0.01, clip 1.0.
TOKENS_PER_PARAM = 2.6
BURN_IN_FRACTION = 0.05
LR_WARMUP_FRACTION = 0.025
EVALS_PER_RUN = 20  # validation loss at every 5% of training: steps to a target are resolved
# The natural-text domains of the embedded corpus: the synthetic `math` domain (near-solved
# arithmetic, which dominated every average of the short studies) is left out of training.
NATURAL_DOMAINS: tuple[str, ...] = ("code", "docs", "drama", "scripture", "wiki")

PAPER_OPTIM: tuple[str, ...] = (
    "train.min_lr_ratio=0.2",
    "train.weight_decay=0.01",
    "train.grad_clip=1.0",
)

# Model sizes (vocabulary 4096, sequence 128, batch 16 x 128 tokens per step), parameters
# counted with the embeddings as the paper's 124M counts them.
MODEL_SIZES: dict[str, tuple[str, ...]] = {
    "0.5M": ("model.dim=64", "model.n_layers=4", "model.n_heads=4", "model.multiple_of=64"),
    "0.8M": ("model.dim=96", "model.n_layers=4", "model.n_heads=4", "model.multiple_of=64"),
    "1.4M": ("model.dim=128", "model.n_layers=4", "model.n_heads=4", "model.multiple_of=64"),
    # The largest that reads scale's corpus (6.1M training tokens) at most once: 0.96 passes.
    "2.2M": ("model.dim=160", "model.n_layers=5", "model.n_heads=8", "model.multiple_of=64"),
    "6M": ("model.dim=256", "model.n_layers=6", "model.n_heads=8", "model.multiple_of=64"),
}
# --quick: QUICK_BASE's corpus slice and tokenizer; sizes small enough for seconds per run.
QUICK_MODEL_SIZES: dict[str, tuple[str, ...]] = {
    "tiny-a": ("model.dim=16", "model.n_layers=1", "model.n_heads=2", "model.multiple_of=16"),
    "tiny-b": ("model.dim=24", "model.n_layers=1", "model.n_heads=2", "model.multiple_of=16"),
    "tiny-c": ("model.dim=32", "model.n_layers=1", "model.n_heads=2", "model.multiple_of=16"),
}
PAPER_DATA: tuple[str, ...] = (
    "data.domains=[" + ",".join(NATURAL_DOMAINS) + "]",
    # 4M characters per domain (docs has 0.4M): about 4M training tokens, so a 2.6 tokens/param
    # run of the 0.8M model reads about half of them once, as the paper's runs read < 1 epoch.
    "data.max_chars_per_domain=4000000",
)
PAPER_FULL_RUN: tuple[str, ...] = (
    "train.threads=1",
    "eval.max_sequences_per_domain=64",
    "log.every=5",
    "log.tensorboard=false",
    "log.progress=false",
)


def warmup_overrides(
    burn_in: float = BURN_IN_FRACTION, lr_warmup: float = LR_WARMUP_FRACTION
) -> tuple[str, ...]:
    """The burn-in and lr warm-up as fractions of the run (they follow train.max_steps)."""
    return (f"reweight.warmup_fraction={burn_in:g}", f"train.lr_warmup_fraction={lr_warmup:g}")


def paper_steps(
    params: int, tokens_per_step: int, tokens_per_param: float = TOKENS_PER_PARAM
) -> int:
    return max(20, round(tokens_per_param * params / tokens_per_step))


def paper_setup(
    quick: bool, size: str | None = None, budget: float = 1.0
) -> tuple[tuple[str, ...], tuple[str, ...], int, int]:
    """The paper's protocol at one model size and data budget: (shared overrides, the run's
    length overrides, steps, parameters). `budget` multiplies the tokens per parameter (1.0:
    the paper's 2.6); the burn-in and lr warm-up are fractions, so they follow the length."""
    from lossreweight.experiments.stats import count_params
    from lossreweight.train import load_config

    sizes = QUICK_MODEL_SIZES if quick else MODEL_SIZES
    size = size or ("tiny-a" if quick else "0.5M")
    if size not in sizes:
        raise ValueError(f"unknown model size {size!r}; sizes: {', '.join(sizes)}")
    base = (
        *PAPER_DATA,
        *PAPER_OPTIM,
        *(QUICK_RUN if quick else PAPER_FULL_RUN),
        *sizes[size],
        *warmup_overrides(),
    )
    cfg = load_config(BASE_CONFIG, list(base))
    vocab = cfg.data.tokenizer.vocab_size  # the BPE's size: what the trainer resolves it to
    params = count_params({**cfg.model.model_dump(mode="json"), "vocab_size": vocab}) or 0
    tokens_per_step = cfg.train.batch_size * cfg.train.grad_accum * cfg.data.seq_len
    steps = paper_steps(params, tokens_per_step, TOKENS_PER_PARAM * budget)
    run = (
        f"train.max_steps={steps}",
        f"eval.every={max(1, steps // EVALS_PER_RUN)}",
        f"checkpoint.every={0 if quick else max(50, steps // 10)}",
    )
    return base, run, steps, params


def paper_scale(
    quick: bool, size: str | None = None, *, seeds: Sequence[int] = (0, 1, 2), budget: float = 1.0
) -> tuple[Scale, int]:
    """The paper's protocol at one model size as one Scale: (scale, parameters)."""
    base, run, steps, params = paper_setup(quick, size, budget)
    return Scale((*base, *run), steps, tuple(seeds)), params
