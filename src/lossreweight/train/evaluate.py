"""Validation loss and perplexity per domain, token-weighted overall and domain-averaged."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist

from lossreweight.train.runtime import Runtime


@torch.no_grad()
def evaluate(
    loss_module: torch.nn.Module,
    batches: list[dict[str, torch.Tensor]],
    domains: list[str],
    rt: Runtime,
) -> dict[str, Any]:
    """Each rank evaluates its own slice of the fixed validation set; sums are all-reduced.

    `loss_module(input_ids)` returns per-sample mean next-token losses (a `PerSampleLoss`,
    possibly wrapped by DDP/FSDP); every position but the first is a target.
    """
    was_training = loss_module.training
    loss_module.eval()
    d = len(domains)
    loss_sum = torch.zeros(d, dtype=torch.float64, device=rt.device)
    tokens = torch.zeros(d, dtype=torch.float64, device=rt.device)
    count = len(batches)
    if rt.distributed:
        # FSDP needs every rank in every forward: ranks with fewer batches run the first again
        # and discard it.
        most = torch.tensor([count], device=rt.device)
        dist.all_reduce(most, op=dist.ReduceOp.MAX)
        count = int(most.item())
    for i in range(count):
        if i >= len(batches):
            if batches:
                loss_module(batches[0]["input_ids"].to(rt.device))
            continue
        batch = batches[i]
        ids = batch["input_ids"].to(rt.device, non_blocking=True)
        dom = batch["domain_ids"].to(rt.device, non_blocking=True)
        losses = loss_module(ids)
        n = torch.full_like(losses, ids.shape[1] - 1)
        ok = torch.isfinite(losses)
        loss_sum.index_add_(0, dom[ok], (losses[ok] * n[ok]).double())
        tokens.index_add_(0, dom[ok], n[ok].double())
    if rt.distributed:
        dist.all_reduce(loss_sum)
        dist.all_reduce(tokens)
    if was_training:
        loss_module.train()
    per = (loss_sum / tokens.clamp(min=1)).tolist()
    tok = tokens.tolist()
    by_domain = {name: per[i] for i, name in enumerate(domains) if tok[i] > 0}
    total_tokens = sum(tok)
    overall = float(loss_sum.sum()) / max(total_tokens, 1.0)
    macro = sum(by_domain.values()) / max(len(by_domain), 1)
    return {
        "val_loss": overall,
        "val_ppl": math.exp(min(overall, 50.0)),
        "val_loss_domain_avg": macro,
        "val_loss_by_domain": by_domain,
        "val_ppl_by_domain": {k: math.exp(min(v, 50.0)) for k, v in by_domain.items()},
        "val_tokens": int(total_tokens),
    }
