"""What a person watching a run sees: one line per evaluation and a final summary through
`logging` (logger `lossreweight.train`; the CLI sends it to stdout), and a tqdm progress bar
on stderr only when stderr is a terminal (a log file gets lines, not bar updates)."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("lossreweight.train")


def _fmt(v: Any, spec: str = ".4f") -> str:
    return "n/a" if v is None else format(v, spec)


def eval_line(step: int, max_steps: int, record: dict[str, Any], worst: str | None) -> str:
    """One line per evaluation, e.g.

    `step 300/1000 | tokens 9.8M | train loss 3.4512 | val loss 3.5021 | worst math 4.1023 |
    251,034 tok/s` (printed as one line).
    """
    worst_part = (
        f"worst {worst} {_fmt(record.get('eval/worst_domain_loss'))}" if worst else "worst n/a"
    )
    return (
        f"step {step}/{max_steps} | tokens {_tokens(record['tokens'])} | "
        f"train loss {_fmt(record.get('train/loss'))} | "
        f"val loss {_fmt(record.get('eval/loss'))} | {worst_part} | "
        f"{_fmt(record.get('train/tokens_per_s'), ',.0f')} tok/s"
    )


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
        self.enabled, self.max_steps = enabled, max_steps
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

    def logged(self, record: dict[str, Any]) -> None:
        """A metrics record: the bar's postfix shows its loss and throughput."""
        if self._bar is not None and record.get("train/loss") is not None:
            self._bar.set_postfix(
                loss=f"{record['train/loss']:.3f}",
                tok_s=f"{record.get('train/tokens_per_s', 0):,.0f}",
            )

    def evaluated(self, record: dict[str, Any], worst: str | None) -> None:
        self.info(eval_line(record["step"], self.max_steps, record, worst))

    def skipped(self, step: int, streak: int) -> None:
        if self.enabled:
            log.warning("step %d skipped: non-finite loss or gradient (%d in a row)", step, streak)

    def summary(
        self, steps: int, tokens: int, seconds: float, final: dict[str, Any], worst: str | None
    ) -> None:
        val = final.get("eval/loss")
        tail = f", val loss {_fmt(val)}" + (
            f", worst {worst} {_fmt(final.get('eval/worst_domain_loss'))}" if worst else ""
        )
        self.info(
            f"trained {steps} steps ({_tokens(tokens)} tokens) in {seconds:.1f} s"
            f"{tail if val is not None else ''}"
        )

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
