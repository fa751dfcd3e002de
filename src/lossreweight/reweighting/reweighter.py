"""`Reweighter`: per-sample losses in, detached weights and a loss to backpropagate out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist

from lossreweight.reweighting.checks import (
    DELTA_RANGE,
    accumulation_value,
    domain_ids_arg,
    is_integer,
    losses_arg,
    max_weight_value,
    non_negative_int,
    number_in,
    step_value,
    weights_arg,
)
from lossreweight.reweighting.distributed import gather_rows, is_distributed, world_size
from lossreweight.reweighting.schedules import TemperatureSchedule, make_schedule
from lossreweight.reweighting.strategies import StrategyFn, get_strategy, is_builtin, strategy_name
from lossreweight.reweighting.weights import (
    scope_weights,
    uniform_weights,
    valid_mask,
    weight_stats,
)

Scope = Literal["micro", "step"]
Stats = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Reweighted:
    """What one `Reweighter.reweight` call hands back (nothing is kept on the Reweighter).

    loss: the scalar to backpropagate, W * sum_i w_i l_i / accumulation_steps (SPEC 4).
    weights: this rank's detached float32 weights.
    stats: SPEC 5 statistics over the whole scope as device tensors (no host sync); combine
        several with `combine_stats`, fetch with `stats_to_python` when logging.
    """

    loss: torch.Tensor
    weights: torch.Tensor
    stats: Stats


class Reweighter:
    """Dynamic loss-based sample reweighting (ICLR 2025), exactly as SPEC.md states it.

    Args:
        strategy: "uniform", "linupper", "quadratic", "extremes", "linear", a registered name,
            or a callable f(x, delta) -> scores.
        temperature: r > 0 as a number, a `TemperatureSchedule`, or a dict with `kind`.
        delta: losses are normalised to [-delta, delta] over the scope.
        warmup_steps: steps (counted from 0) with uniform weights.
        max_weight: optional cap c >= 1: weights are projected onto w_i <= c/M.
        scope: "micro" (weights over one micro-batch across ranks, the paper's code) or
            "step" (over the whole accumulation window; see `accumulate_step`).
        group: process group to gather over (default: the world when initialised).
        max_batch_size: the largest per-rank batch passed in; with it, the cross-rank gather
            needs no host synchronisation. Without it, ranks agree on sizes with one small
            all-reduce per call (unequal sizes work either way).
        num_domains: number of domains, for per-domain weight-share statistics.
    """

    def __init__(
        self,
        strategy: str | StrategyFn = "linupper",
        temperature: float | TemperatureSchedule | dict[str, Any] = 1.0,
        *,
        delta: float = 1.0,
        warmup_steps: int = 0,
        max_weight: float | None = None,
        scope: Scope = "micro",
        group: dist.ProcessGroup | None = None,
        max_batch_size: int | None = None,
        num_domains: int = 0,
    ) -> None:
        self.strategy_fn = get_strategy(strategy)
        self.strategy = strategy_name(strategy)
        self.schedule = make_schedule(temperature)
        lo, hi = DELTA_RANGE
        self.delta = number_in(
            "delta", delta, lo, hi, " (losses are normalised to [-delta, delta]; the paper uses 1)"
        )
        self.warmup_steps = non_negative_int("warmup_steps", warmup_steps)
        if scope not in ("micro", "step"):
            raise ValueError(f"scope must be 'micro' or 'step', got {scope!r}")
        if max_batch_size is not None and (not is_integer(max_batch_size) or max_batch_size < 1):
            raise ValueError(
                f"max_batch_size must be an integer >= 1 or None, got {max_batch_size!r}"
            )
        self.max_weight = max_weight_value(max_weight)
        self.scope: Scope = scope
        self.group = group
        self.max_batch_size = None if max_batch_size is None else int(max_batch_size)
        self.num_domains = non_negative_int(
            "num_domains", num_domains, " (0: no per-domain statistics)"
        )

    # -- the method -------------------------------------------------------------------------
    def temperature(self, step: int) -> float:
        return self.schedule(step_value(step))

    def is_uniform(self, step: int) -> bool:
        return self.strategy == "uniform" or step_value(step) < self.warmup_steps

    def weights(
        self,
        losses: torch.Tensor,
        *,
        step: int = 0,
        domain_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """This rank's weights (1-D float32, detached) for its per-sample `losses`.

        Under torch.distributed the losses of all ranks are gathered so the weights are
        normalised over the global scope; they sum to 1 over all ranks' valid samples.
        """
        return self.weights_and_stats(losses, step=step, domain_ids=domain_ids)[0]

    def weights_and_stats(
        self,
        losses: torch.Tensor,
        *,
        step: int = 0,
        domain_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Stats]:
        """`weights(...)` and the scope's SPEC 5 statistics (device tensors, no host sync)."""
        losses = losses_arg(losses)
        step = step_value(step)
        if domain_ids is not None:
            domain_ids = domain_ids_arg(domain_ids, losses, self.num_domains)
        if losses.numel() == 0 and not is_distributed(self.group):
            raise ValueError("losses is empty: pass the per-sample losses of at least one sample")
        g = gather_rows(losses.detach(), domain_ids, group=self.group, capacity=self.max_batch_size)
        if g.losses.numel() == 0:  # every rank passed an empty batch
            raise ValueError(
                "losses is empty on every rank: pass the per-sample losses of at least one sample"
            )
        valid = valid_mask(g.losses, g.present)
        r = self.temperature(step)
        if self.is_uniform(step):
            w = uniform_weights(valid)
        else:
            # A sample whose score is not finite (a custom strategy's NaN) becomes invalid.
            w, valid = scope_weights(
                g.losses,
                strategy=self.strategy_fn,
                temperature=r,
                delta=self.delta,
                max_weight=self.max_weight,
                valid=valid,
                name=self.strategy,
                check=not is_builtin(self.strategy_fn),
            )
        stats = weight_stats(
            w,
            g.losses,
            valid,
            r,
            present=g.present,
            domain_ids=g.domain_ids,
            num_domains=self.num_domains,
        )
        return w[g.offset : g.offset + g.count], stats

    def reweight(
        self,
        losses: torch.Tensor,
        *,
        step: int = 0,
        domain_ids: torch.Tensor | None = None,
        accumulation_steps: int = 1,
    ) -> Reweighted:
        """Weights, the loss to backpropagate and the statistics of one scope, in one call."""
        accumulation_steps = accumulation_value(accumulation_steps)
        w, stats = self.weights_and_stats(losses, step=step, domain_ids=domain_ids)
        loss = self.weighted_loss(losses, weights=w, accumulation_steps=accumulation_steps)
        return Reweighted(loss=loss, weights=w, stats=stats)

    def weighted_loss(
        self,
        losses: torch.Tensor,
        *,
        step: int = 0,
        weights: torch.Tensor | None = None,
        domain_ids: torch.Tensor | None = None,
        accumulation_steps: int = 1,
    ) -> torch.Tensor:
        """The scalar to backpropagate: W * sum_i w_i l_i / accumulation_steps (SPEC 4).

        With gradient averaging over W data-parallel ranks (DDP, FSDP) the averaged
        gradient is sum_i w_i grad l_i. Invalid samples (non-finite loss) contribute no
        value and no gradient. Pass `weights` to reuse weights computed earlier (the `step`
        scope); then `accumulation_steps` should stay 1 since they already sum to 1 over the
        whole step.
        """
        losses = losses_arg(losses)
        accumulation_steps = accumulation_value(accumulation_steps)
        if weights is None:
            weights = self.weights(losses.detach(), step=step, domain_ids=domain_ids)
        else:
            weights = weights_arg(weights, losses)
        w = weights.detach().to(torch.float32)
        safe = torch.where(torch.isfinite(losses), losses.to(torch.float32), 0.0)
        scale = world_size(self.group) / accumulation_steps
        return (w * safe).sum() * scale

    # -- bookkeeping ------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "temperature": self.schedule.to_dict(),
            "delta": self.delta,
            "warmup_steps": self.warmup_steps,
            "max_weight": self.max_weight,
            "scope": self.scope,
        }

    def state_dict(self) -> dict[str, Any]:
        # Weights depend only on the step and the batch: the config is the whole state. It is
        # saved so a resume can refuse a checkpoint trained with other settings.
        return {"config": self.config()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("config", {})
        if saved and saved != self.config():
            raise ValueError(
                f"checkpoint was trained with reweighting {saved}, but this run uses "
                f"{self.config()}; use the original settings or a new output directory"
            )

    def __repr__(self) -> str:
        cfg = self.config()
        return "Reweighter(" + ", ".join(f"{k}={v!r}" for k, v in cfg.items()) + ")"
