"""The stop / divergence policy: signals ask for a clean stop; a step whose loss or gradient is
not finite (or that has no valid sample) is skipped on device; N skipped steps in a row stop
the run. Nothing here makes the host wait for the device: the skip is a mask the optimizer
applies on device, and the host learns of it (and of a stop agreed across ranks) when it reads
the step's flags, one step later or at the next logging / checkpoint step."""

from __future__ import annotations

import contextlib
import math
import signal
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from lossreweight.integrity import describe_last_good
from lossreweight.train.failures import TrainingDiverged


class StopSignals:
    """SIGTERM / Ctrl-C while training ask for a checkpoint at the end of the current step; a
    second one interrupts at once. Before training starts (data preparation, set-up) there is
    nothing to save: the first one interrupts at once (KeyboardInterrupt, so `finally` blocks
    remove temporary files)."""

    def __init__(self) -> None:
        self.requested = False
        self.training = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: no handlers
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested or not self.training:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _masked_step(optimizer: torch.optim.Optimizer, skip: torch.Tensor) -> None:
    """optimizer.step(), undone on device where `skip` holds: for optimizers without a fused
    kernel that honours `found_inf`. Costs a copy of parameters and state."""

    def tensors() -> list[torch.Tensor]:
        out = [p for g in optimizer.param_groups for p in g["params"]]
        out += [
            t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)
        ]
        return out

    before = {id(t): (t, t.detach().clone()) for t in tensors()}
    optimizer.step()
    with torch.no_grad():
        for t in tensors():
            # State the step created (its first) goes back to the zeros a fresh optimizer has.
            old = before[id(t)][1] if id(t) in before else torch.zeros_like(t)
            t.copy_(torch.where(skip, old, t))


class StepGuard:
    """Applies or skips each step's update on device and keeps the non-finite streak there.

    With a fused AdamW (every device torch has its kernel for), the skip is the optimizer's
    own `found_inf` input, as GradScaler uses it: on 1 the kernel leaves parameters, moments
    and the step count untouched. Other optimizers get a device-side mask (`_masked_step`).
    Under torch.distributed one all-reduce (MAX) per step makes every rank skip the same
    steps and learn of any rank's stop request; it is queued, not waited for."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, device: torch.device, *, distributed: bool
    ) -> None:
        self.optimizer = optimizer
        self.fused = bool(optimizer.defaults.get("fused"))
        self.distributed = distributed
        self._streak = torch.zeros((), device=device)
        self._stop = torch.zeros((), device=device)  # this rank's stop request, as a device flag
        self._stop_sent = False

    def request_stop(self) -> None:
        """Tell the other ranks (at the next step) that this one wants to stop."""
        if not self._stop_sent:
            self._stop.fill_(1.0)  # a kernel with the value as argument: no copy, no sync
            self._stop_sent = True

    def step(
        self, grad_norm: torch.Tensor, stats: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Update unless the step is non-finite on any rank. Returns device flags: `skipped`
        (0/1), `nonfinite_streak` (skipped steps in a row, this one included) and `stop` (1
        when any rank asked to stop)."""
        # Non-finite loss or gradient, or no valid sample at all (a NaN storm: all weights 0,
        # a zero gradient AdamW would still step on): skip the update.
        ok = (
            torch.isfinite(grad_norm)
            & torch.isfinite(stats["weighted_loss"])
            & (stats["num_samples"] > 0)
        )
        flags = torch.stack([(~ok).to(torch.float32), self._stop])
        if self.distributed:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        skip = flags[0]
        if self.fused:
            self.optimizer.found_inf = skip  # type: ignore[attr-defined]
            self.optimizer.step()
        else:
            _masked_step(self.optimizer, skip > 0)
        self._streak = (self._streak + 1.0) * skip  # a finite step resets the streak
        return {"skipped": skip, "nonfinite_streak": self._streak, "stop": flags[1]}


def check_divergence(
    streak: float, step: int, limit: int, run_dir: Path, stats: dict[str, float] | None = None
) -> None:
    """TrainingDiverged when `limit` steps in a row, the last `step`, were skipped; `stats`
    (the last step's host values) tell a reweighting fault from a model/lr one."""
    if streak < limit:
        return
    good = describe_last_good(run_dir)  # finite weights only (lossreweight.integrity)
    if stats and _reweighting_fault(stats):
        raise TrainingDiverged(
            f"{int(streak)} steps in a row skipped, the last at step {step}: "
            "the per-sample losses were finite but the reweighted loss was not "
            "(the weights overflow or underflow); raise "
            "reweight.temperature or set reweight.max_weight, and train into a new --out (the "
            f"reweighting cannot change on resume); last good checkpoint: {good}"
        )
    raise TrainingDiverged(
        f"{int(streak)} non-finite steps in a row (loss or gradient is NaN/inf), "
        f"the last at step {step}; "
        f"last good checkpoint: {good}; lower train.lr or raise "
        "train.grad_clip (allowed on resume), then re-run the command to resume from it"
    )


def _reweighting_fault(stats: dict[str, float]) -> bool:
    """Valid samples with a finite mean loss, yet a non-finite weighted loss: the weights broke."""
    mean, weighted = stats.get("mean_loss"), stats.get("weighted_loss")
    return (
        (stats.get("num_samples") or 0) > 0
        and mean is not None and math.isfinite(mean)
        and weighted is not None and not math.isfinite(weighted)
    )  # fmt: skip
