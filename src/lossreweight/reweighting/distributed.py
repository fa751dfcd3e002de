"""Gathering per-sample values across data-parallel ranks (SPEC 4).

Rows are gathered in the group's rank order and each rank keeps the slice at its own
group rank (not its local rank, which is wrong on more than one node). Ranks may hold
different numbers of samples: every rank pads to a common capacity and a `present` column
masks the padding. The capacity is either given (no host sync at all) or agreed by an
all-reduce of the local sizes (one small sync).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Gathered:
    """The whole scope's rows, with where this rank's rows sit in it."""

    losses: torch.Tensor  # [W * capacity] float32, padding rows are 0
    present: torch.Tensor  # [W * capacity] bool, False on padding
    domain_ids: torch.Tensor | None  # [W * capacity] long, or None
    offset: int  # first row of this rank
    count: int  # this rank's number of rows
    world_size: int


def is_distributed(group: dist.ProcessGroup | None = None) -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def world_size(group: dist.ProcessGroup | None = None) -> int:
    return dist.get_world_size(group) if is_distributed(group) else 1


def _agree_capacity(n: int, device: torch.device, group: dist.ProcessGroup | None) -> int:
    size = torch.tensor([n], device=device, dtype=torch.int64)
    dist.all_reduce(size, op=dist.ReduceOp.MAX, group=group)
    return int(size.item())  # sync-ok: only without a known capacity (the trainer passes one)


def _all_gather(out: torch.Tensor, local: torch.Tensor, group: dist.ProcessGroup | None) -> None:
    # all_gather_single supersedes all_gather_into_tensor in newer torch; same semantics.
    fn = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    fn(out, local, group=group)


def gather_rows(
    losses: torch.Tensor,
    domain_ids: torch.Tensor | None = None,
    *,
    group: dist.ProcessGroup | None = None,
    capacity: int | None = None,
) -> Gathered:
    """All ranks' losses (and domain ids) in group-rank order, padded to a common capacity."""
    n = losses.numel()
    losses = losses.detach().reshape(-1).to(torch.float32)
    if domain_ids is not None:
        domain_ids = domain_ids.reshape(-1).to(device=losses.device, dtype=torch.long)
    if not is_distributed(group):
        present = torch.ones(n, dtype=torch.bool, device=losses.device)
        return Gathered(losses, present, domain_ids, 0, n, 1)

    w = dist.get_world_size(group)
    rank = dist.get_rank(group)
    if capacity is None:
        capacity = _agree_capacity(n, losses.device, group)
    elif n > capacity:
        raise ValueError(
            f"this rank has {n} samples but the reweighter's max_batch_size is {capacity}; "
            "raise max_batch_size or pass max_batch_size=None"
        )
    # Pack (loss, present, domain) as float32 columns: one collective instead of three.
    # Domain ids are exact in float32 up to 2**24.
    cols = 3 if domain_ids is not None else 2
    local = torch.zeros(capacity, cols, dtype=torch.float32, device=losses.device)
    local[:n, 0] = torch.nan_to_num(losses, nan=0.0, posinf=0.0, neginf=0.0)
    # Keep non-finite losses distinguishable from padding: present=2 means "present but invalid".
    local[:n, 1] = torch.where(torch.isfinite(losses), 1.0, 2.0)
    if domain_ids is not None:
        local[:n, 2] = domain_ids.to(torch.float32)
    out = torch.empty(w * capacity, cols, dtype=torch.float32, device=losses.device)
    _all_gather(out, local, group)
    flag = out[:, 1]
    gathered_losses = torch.where(flag == 2.0, torch.nan, out[:, 0])
    gathered_domains = out[:, 2].to(torch.long) if domain_ids is not None else None
    return Gathered(gathered_losses, flag > 0, gathered_domains, rank * capacity, n, w)
