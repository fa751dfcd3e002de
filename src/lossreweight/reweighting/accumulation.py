"""Exact whole-step reweighting under gradient accumulation (`scope="step"`, SPEC 4).

Weights over the whole step need every micro-batch's loss before any backward pass. We pay
for that with a no-grad forward over the accumulation window first (about +1/3 of the
step's compute for a forward/backward that costs 3 forwards), then run the weighted
forward/backward per micro-batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lossreweight.reweighting.reweighter import Reweighter

LossFn = Callable[[Any], torch.Tensor]  # micro-batch -> per-sample losses [b]


@dataclass
class StepResult:
    loss: torch.Tensor  # detached sum of the backpropagated micro-batch losses
    weights: torch.Tensor  # this rank's weights for the whole step, in micro-batch order
    losses: torch.Tensor  # this rank's no-grad per-sample losses, in micro-batch order
    stats: dict[str, torch.Tensor]  # SPEC 5 statistics over the whole step (device tensors)


def _no_sync(model: torch.nn.Module | None, last: bool) -> contextlib.AbstractContextManager:
    # DDP: only the last backward of the window all-reduces gradients.
    if model is not None and not last and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def accumulate_step(
    loss_fn: LossFn,
    micro_batches: Sequence[Any],
    reweighter: Reweighter,
    *,
    step: int,
    model: torch.nn.Module | None = None,
    domain_ids: Sequence[torch.Tensor] | None = None,
) -> StepResult:
    """Backpropagate one optimizer step's reweighted loss with weights over the whole step.

    `loss_fn(micro_batch)` returns the per-sample losses of that micro-batch (with autograd).
    The gradient accumulated in the model equals that of one process running the whole
    step's batch with weights normalised over it (given a deterministic `loss_fn`). Call
    `optimizer.step()` afterwards. Pass the DDP-wrapped `model` to skip gradient all-reduce
    on all but the last micro-batch.
    """
    if len(micro_batches) == 0:
        raise ValueError("accumulate_step needs at least one micro-batch")
    if domain_ids is not None and len(domain_ids) != len(micro_batches):
        raise ValueError("domain_ids must hold one tensor per micro-batch")
    with torch.no_grad():
        parts = [loss_fn(mb).detach().to(torch.float32) for mb in micro_batches]
    sizes = [p.numel() for p in parts]
    losses = torch.cat(parts)
    doms = torch.cat([d.reshape(-1) for d in domain_ids]) if domain_ids is not None else None
    weights, stats = reweighter.weights_and_stats(losses, step=step, domain_ids=doms)
    total = torch.zeros((), device=losses.device)
    start = 0
    for i, mb in enumerate(micro_batches):
        w = weights[start : start + sizes[i]]
        start += sizes[i]
        with _no_sync(model, last=i == len(micro_batches) - 1):
            mb_losses = loss_fn(mb)
            loss = reweighter.weighted_loss(mb_losses, weights=w)
            loss.backward()
        total = total + loss.detach()
    return StepResult(loss=total, weights=weights, losses=losses, stats=stats)
