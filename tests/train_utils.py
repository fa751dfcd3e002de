"""A tiny run config shared by the training tests (seconds per run on one CPU core)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

TINY_OVERRIDES = [
    "data.max_chars_per_domain=20000",
    "data.tokenizer.vocab_size=512",
    "data.seq_len=32",
    "model.dim=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "model.multiple_of=32",
    "model.max_seq_len=32",
    "train.batch_size=4",
    "train.max_steps=6",
    "train.lr_warmup_steps=2",
    "train.threads=1",
    "eval.every=3",
    "eval.batch_size=16",
    "eval.max_sequences_per_domain=8",
    "log.every=1",
    "log.progress=false",
    "log.tensorboard=false",
    "checkpoint.every=3",
]

# Fields of a metrics record that depend on wall-clock time.
TIMING_KEYS = {"train/tokens_per_s", "train/mfu"}


def deterministic(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def check_steps_for_syncs(monkeypatch: Any, on: Any, off: Any) -> list[int]:
    """Call `on()` as each training step starts its device work and `off()` around what may
    wait for the device by design (evaluation, a checkpoint save) and after the loop, so a
    sync detector armed by `on` covers every step of the loop but those. Returns the steps
    seen (filled while training)."""
    import lossreweight.train.loop as loop
    from lossreweight.train.checkpoint import Checkpointer
    from lossreweight.train.evaluate import Evaluator

    steps: list[int] = []
    real_fb, real_loop = loop.forward_backward, loop.Trainer._loop

    def forward_backward(*args: Any, **kwargs: Any) -> Any:
        steps.append(args[3])
        on()
        return real_fb(*args, **kwargs)

    def paused(real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            off()
            try:
                return real(*args, **kwargs)
            finally:
                on()

        return call

    def run_loop(*args: Any, **kwargs: Any) -> Any:
        try:
            return real_loop(*args, **kwargs)
        finally:
            off()

    monkeypatch.setattr(loop, "forward_backward", forward_backward)
    monkeypatch.setattr(loop.Trainer, "_loop", run_loop)
    monkeypatch.setattr(Evaluator, "run", paused(Evaluator.run))
    monkeypatch.setattr(Checkpointer, "save", paused(Checkpointer.save))
    return steps


def torchrun_train_cmd(out: Path, *args: str, nproc: int = 2) -> list[str]:
    """`torchrun --standalone --nproc_per_node N -m lossreweight.cli train tiny --out OUT ARGS`."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "lossreweight.cli",
        "train",
        "tiny",
        "--out",
        str(out),
        *args,
    ]
