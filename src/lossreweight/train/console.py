"""What a person watching a run sees, through `logging` (logger `lossreweight.train`; the CLI
sends it to stdout): a line every `log.every` steps (loss, lr, tokens/s, the weights' ESS) that
also carries the validation loss at an evaluation, where a run resumes from, and a final
summary; a tqdm progress bar on stderr only when stderr is a terminal (a log file gets lines,
not bar updates)."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lossreweight.metric_names import (
    LOSS,
    LR,
    SKIPPED,
    TOKENS_PER_S,
    TRAIN_LOSS,
    WORST_DOMAIN_LOSS,
    reweight_name,
)

log = logging.getLogger("lossreweight.train")
ESS = reweight_name("ess_fraction")  # effective sample size / batch size: 100% = uniform


def _fmt(v: Any, spec: str = ".4f") -> str:
    return "n/a" if v is None else format(v, spec)


def step_line(step: int, max_steps: int, record: dict[str, Any], worst: str | None) -> str:
    """One line per logged step, e.g. (one line)

    `step 300/1000 | tokens 9.8M | loss 3.4512 | lr 2.85e-03 | 251,034 tok/s | ess 93%`, and
    at an evaluation `... | val loss 3.5021 | worst math 4.1023`.
    """
    parts = [
        f"step {step}/{max_steps}",
        f"tokens {_tokens(record['tokens'])}",
        f"loss {_fmt(record.get(TRAIN_LOSS))}",
        f"lr {_fmt(record.get(LR), '.2e')}",
        f"{_fmt(record.get(TOKENS_PER_S), ',.0f')} tok/s",
        f"ess {_fmt(record.get(ESS), '.0%')}",
    ]
    if record.get(SKIPPED):
        parts.append("skipped")
    if LOSS in record:
        parts.append(f"val loss {_fmt(record.get(LOSS))}")
        parts.append(f"worst {worst} {_fmt(record.get(WORST_DOMAIN_LOSS))}" if worst else "")
    return " | ".join(p for p in parts if p)


def _tokens(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


class Console:
    """Main rank only. `progress` asks for a bar; it is shown only on a terminal."""

    def __init__(
        self, *, enabled: bool, progress: bool, max_steps: int, initial: int, desc: str
    ) -> None:
        self.enabled, self.max_steps, self.initial = enabled, max_steps, initial
        self._bar = None
        if enabled and progress and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=max_steps,
                initial=initial,
                desc=desc,
                unit="step",
                dynamic_ncols=True,
                leave=False,
            )

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def resumed(self, step: int, checkpoint: Path, note: str | None = None) -> None:
        """The run goes on from a checkpoint (and how its schedule changes, if it does); a
        finished one says so in its summary instead."""
        if step >= self.max_steps:
            return
        self.info(f"resuming from step {step} (checkpoint {checkpoint})")
        if note:
            self.info(note)

    def logged(self, record: dict[str, Any]) -> None:
        """A metrics record (every log.every steps): its line, unless an evaluation's line
        (`evaluated`) follows; the bar's postfix shows its loss and throughput."""
        if LOSS not in record:
            self.info(step_line(record["step"], self.max_steps, record, None))
        if self._bar is not None and record.get(TRAIN_LOSS) is not None:
            self._bar.set_postfix(
                loss=f"{record[TRAIN_LOSS]:.3f}", tok_s=f"{record.get(TOKENS_PER_S, 0):,.0f}"
            )

    def evaluated(self, record: dict[str, Any], worst: str | None) -> None:
        self.info(step_line(record["step"], self.max_steps, record, worst))

    def skipped(self, step: int, streak: int) -> None:
        if self.enabled:
            log.warning("step %d skipped: non-finite loss or gradient (%d in a row)", step, streak)

    def summary(
        self, steps: int, tokens: int, seconds: float, final: dict[str, Any], worst: str | None
    ) -> None:
        """The last line: what this invocation trained (or that there was nothing left)."""
        val = final.get(LOSS)
        tail = f", val loss {_fmt(val)}" + (
            f", worst {worst} {_fmt(final.get(WORST_DOMAIN_LOSS))}" if worst else ""
        )
        tail = tail if val is not None else ""
        if steps == self.initial:
            self.info(
                f"already finished at step {steps} ({_tokens(tokens)} tokens){tail}; raise "
                "train.max_steps (--max-steps) to continue it"
            )
        elif self.initial:
            self.info(
                f"trained steps {self.initial + 1}-{steps} ({steps - self.initial} steps; "
                f"{_tokens(tokens)} tokens in all) in {seconds:.1f} s{tail}"
            )
        else:
            self.info(f"trained {steps} steps ({_tokens(tokens)} tokens) in {seconds:.1f} s{tail}")

    def info(self, line: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.clear()  # the line goes above the bar, not through it
        log.info(line)
        if self._bar is not None:
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class _Stdout(logging.StreamHandler):
    """A handler on whatever sys.stdout is at the time (pytest swaps it per test)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


@contextlib.contextmanager
def lines_on_stdout() -> Iterator[None]:
    """For the command line, while a command runs: the trainer's INFO lines on stdout (library
    code never configures logging; this is the application's choice)."""
    logger = logging.getLogger("lossreweight")
    handler = _Stdout()
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
