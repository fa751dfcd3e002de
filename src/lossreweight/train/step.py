"""One optimizer step's device work before the update: micro-batch forward/backward with the
reweighted loss, and gradient clipping. No host synchronisation."""

from __future__ import annotations

import contextlib
import math

import torch

from lossreweight.config import RunConfig
from lossreweight.reweighting import Reweighter, accumulate_step, combine_stats


def build_reweighter(cfg: RunConfig, num_domains: int) -> Reweighter:
    """The run's Reweighter; burn-in is `cfg.burn_in_steps` (reweight.warmup_fraction of
    train.max_steps, or reweight.warmup_steps)."""
    rw = cfg.reweight
    # A step-scope Reweighter normalises over all the step's micro-batches at once.
    per_call = cfg.train.batch_size * (cfg.train.grad_accum if rw.scope == "step" else 1)
    return Reweighter(
        rw.strategy,
        rw.temperature,
        delta=rw.delta,
        warmup_steps=cfg.burn_in_steps,
        max_weight=rw.max_weight,
        scope=rw.scope,
        max_batch_size=per_call,
        num_domains=num_domains,
    )


def forward_backward(
    wrapped: torch.nn.Module,
    reweighter: Reweighter,
    batches: list[dict[str, torch.Tensor]],
    step: int,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Accumulate the gradient of the step's micro-batches; return the step's statistics."""
    ids = [b["input_ids"].to(device, non_blocking=True) for b in batches]
    doms = [b["domain_ids"].to(device, non_blocking=True) for b in batches]
    if reweighter.scope == "step":  # weights normalised over the whole step
        return accumulate_step(
            wrapped, ids, reweighter, step=step, model=wrapped, domain_ids=doms
        ).stats
    a = len(batches)
    collected: list[dict[str, torch.Tensor]] = []
    for i in range(a):
        # DDP all-reduces gradients on the last micro-batch only.
        last = i == a - 1
        sync = (
            contextlib.nullcontext()
            if last or not hasattr(wrapped, "no_sync")
            else wrapped.no_sync()
        )
        with sync:
            out = reweighter.reweight(
                wrapped(ids[i]), step=step, domain_ids=doms[i], accumulation_steps=a
            )
            out.loss.backward()
        collected.append(out.stats)
    # The step's statistics over its micro-batches (on device): counts add, means weight by samples.
    return combine_stats(collected)


def clip_gradients(
    model: torch.nn.Module, max_norm: float | None, device: torch.device
) -> torch.Tensor:
    """Clip to `max_norm` (None or 0: measure only); the global gradient norm, on device."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return torch.zeros((), device=device)
    # foreach=True: one fused kernel per dtype/device; with FSDP2 the DTensor norm is global.
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm or math.inf, foreach=True)
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return norm
