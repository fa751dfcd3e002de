"""The reporter: turns finished steps into metrics records, evaluations, console lines and
the divergence verdict, reading each step's values from the host only when they are there.

Steps are queued with their device values (`Pending`); `report(keep=1)` reads all but the
newest, so the host reads step k-1 while the device works on step k; `report()` reads all
(at a step that evaluates or saves, which waits for the device anyway)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lossreweight.config import RunConfig
from lossreweight.metric_names import rate_metrics, step_metrics, worst_domain
from lossreweight.train.console import Console
from lossreweight.train.evaluate import Evaluator
from lossreweight.train.flops import mfu, peak_flops
from lossreweight.train.guard import check_divergence
from lossreweight.train.host_copy import Pending
from lossreweight.train.metrics import MetricsLogger
from lossreweight.train.runtime import Runtime, fault_point


@dataclass
class _Queued:
    """A finished step whose flags and metrics are on their way to the host."""

    step: int
    tokens: int
    lr: float
    values: Pending
    time: float  # when the host had queued it: the clock of the tokens/s windows


class StepReporter:
    """Logs every `log_every` steps, every evaluation step and every skipped step; evaluates
    when the evaluator is due; raises TrainingDiverged after `max_nonfinite` skips in a row."""

    def __init__(
        self,
        *,
        evaluator: Evaluator,
        logger: MetricsLogger,
        console: Console,
        domains: list[str],
        log_every: int,
        max_steps: int,
        max_nonfinite: int,
        run_dir: Path,
        rank: int = 0,
        world_size: int = 1,
        flops_per_token: float = 0.0,
        peak_flops: float | None = None,
    ) -> None:
        self.evaluator, self.logger, self.console, self.domains = (
            evaluator,
            logger,
            console,
            domains,
        )
        self.log_every, self.max_steps, self.max_nonfinite = log_every, max_steps, max_nonfinite
        self.run_dir, self.rank, self.world_size = run_dir, rank, world_size
        self.flops_per_token, self.peak_flops = flops_per_token, peak_flops
        self._queue: list[_Queued] = []
        # Called with (step, host values, skipped) for every step read (e.g. the burn-in rule).
        self.observers: list[Callable[[int, Mapping[str, Any], bool], None]] = []
        self._t_log, self._tokens_at_log = time.perf_counter(), 0

    @classmethod
    def for_run(
        cls,
        cfg: RunConfig,
        run_dir: Path,
        rt: Runtime,
        *,
        evaluator: Evaluator,
        domains: list[str],
        flops_per_token: float,
        initial_step: int,
        config: dict[str, Any],
    ) -> StepReporter:
        """The reporter of a training run, with its metrics sinks and console (main rank)."""
        logger = MetricsLogger(
            run_dir,
            enabled=rt.is_main,
            tensorboard=cfg.log.tensorboard,
            wandb_project=cfg.log.wandb_project,
            wandb_run_name=cfg.log.wandb_run_name,
            config=config,
        )
        console = Console(
            enabled=rt.is_main,
            progress=cfg.log.progress,
            max_steps=cfg.train.max_steps,
            initial=initial_step,
            desc=cfg.reweight.strategy,
        )
        return cls(
            evaluator=evaluator,
            logger=logger,
            console=console,
            domains=domains,
            log_every=cfg.log.every,
            max_steps=cfg.train.max_steps,
            max_nonfinite=cfg.train.max_nonfinite_steps,
            run_dir=run_dir,
            rank=rt.rank,
            world_size=rt.world_size,
            flops_per_token=flops_per_token,
            peak_flops=peak_flops(rt.device),
        )

    def start(self, tokens: int) -> None:
        """The throughput clock starts now, at `tokens` (a resumed run's count)."""
        self._t_log, self._tokens_at_log = time.perf_counter(), tokens

    def queue(self, step: int, tokens: int, lr: float, values: dict[str, torch.Tensor]) -> None:
        """A step is done (queued on the device): its values start their way to the host."""
        self._queue.append(_Queued(step, tokens, lr, Pending(values), time.perf_counter()))

    def report(self, keep: int = 0) -> bool:
        """Read the queued steps but the newest `keep`, oldest first, and report them. True when
        any rank asked to stop (the `stop` flag of a step)."""
        agreed = False
        while len(self._queue) > keep:
            q = self._queue.pop(0)
            values = dict(q.values.get())
            skipped = values.pop("skipped") > 0
            streak = int(values.pop("nonfinite_streak"))
            agreed |= values.pop("stop") > 0
            for observe in self.observers:
                observe(q.step, values, skipped)
            do_eval = self.evaluator.due(q.step, last=q.step == self.max_steps)
            if do_eval or skipped or q.step % self.log_every == 0:
                self._log(q, values, skipped, do_eval)
            if skipped:
                self.console.skipped(q.step, streak)
            check_divergence(streak, q.step, self.max_nonfinite, self.run_dir, stats=values)
        return agreed

    def _log(self, q: _Queued, values: dict[str, Any], skipped: bool, do_eval: bool) -> None:
        rate = (q.tokens - self._tokens_at_log) / max(q.time - self._t_log, 1e-9)
        self._t_log, self._tokens_at_log = q.time, q.tokens
        record: dict[str, Any] = {"step": q.step, "tokens": q.tokens}
        record.update(step_metrics(values, lr=q.lr, domains=self.domains, skipped=skipped))
        record.update(
            rate_metrics(rate, mfu(rate, self.flops_per_token, self.peak_flops, self.world_size))
        )
        if do_eval:
            fault_point("eval", q.step, self.rank)
            record.update(self.evaluator.run())
            self._t_log = time.perf_counter()  # evaluation time is not training throughput
        self.logger.log(record)
        self.console.logged(record)
        if do_eval:
            self.console.evaluated(record, worst_domain(self.evaluator.last))
