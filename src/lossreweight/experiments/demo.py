"""The demo: uniform vs LinUpper on the embedded corpus with the `tiny` preset, one seed.

Full: the preset, 250 steps (about 5 minutes on a 2-core CPU, data preparation included).
Quick: a smaller corpus, tokenizer, model and run (well under a minute cold), for a first
look and for the tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lossreweight.experiments.compare import run_compare
from lossreweight.experiments.runs import Log

STRATEGIES: tuple[str, ...] = ("uniform", "linupper")
SEED = 0
DEFAULT_OUT = Path("runs/demo")
QUICK_OUT = Path("runs/demo-quick")

# The full demo: the tiny preset shortened to 250 steps (2-3 minutes per run on the 2-core
# CPU, so the demo fits 10 minutes with room for a busy machine), evaluated every 50 steps.
FULL_OVERRIDES: tuple[str, ...] = (
    "train.max_steps=250",
    "eval.every=50",
    "log.every=1",  # weight diagnostics at every step, and step 1 (same batch, same init) logged
    "log.tensorboard=false",
)

# --quick: a 50k-character slice of each domain, a 1k BPE vocabulary, a 2-layer width-64
# model and 100 steps of 16 x 64 tokens; logged every step so step 1 (the same first batch
# under the same init for both strategies) is in the metrics.
QUICK_OVERRIDES: tuple[str, ...] = (
    "data.max_chars_per_domain=50000",
    "data.tokenizer.vocab_size=1024",
    "data.seq_len=64",
    "model.dim=64",
    "model.n_layers=2",
    "model.n_heads=2",
    "model.multiple_of=32",
    "model.max_seq_len=64",
    "train.max_steps=100",
    "train.batch_size=16",
    "train.lr_warmup_steps=10",
    "eval.every=20",
    "eval.batch_size=64",
    "eval.max_sequences_per_domain=32",
    "log.every=1",
    "log.tensorboard=false",
    "checkpoint.every=50",
    "train.threads=1",  # a width-64 model gains nothing from a second thread
)


def thread_overrides() -> tuple[str, ...]:
    """One torch thread on a machine with two cores or fewer.

    Measured on the 2-core CPU this was built on: two intra-op threads run the tiny preset at
    about 6k tokens/s on an idle machine but collapse to 400-800 tokens/s as soon as another
    process takes a core, while one thread holds about 4k tokens/s either way. Threads do not
    change the results (and are not part of a run's cache key).
    """
    return ("train.threads=1",) if (os.cpu_count() or 1) <= 2 else ()


def run_demo(out_dir: Path | None = None, *, quick: bool = False, log: Log | None = None,
             extra_overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    out = Path(out_dir) if out_dir is not None else (QUICK_OUT if quick else DEFAULT_OUT)
    overrides = [*(QUICK_OVERRIDES if quick else (*FULL_OVERRIDES, *thread_overrides())), *extra_overrides]
    title = f"demo{' (quick)' if quick else ''}: uniform vs linupper on the embedded corpus"
    return run_compare("tiny", out, list(STRATEGIES), [SEED], overrides, log=log, title=title)
