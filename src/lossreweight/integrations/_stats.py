"""Reweighting statistics kept on device between logging steps, combined by the one rule.

Every integration combines the statistics of its weight computations (micro-batches,
optimizer steps, ranks) with `combine_stats`, the function the trainer uses: counts add,
means are weighted by valid samples. Framework loggers (the HF Trainer's `log`, Lightning's
`log_dict`, TensorBoard, W&B) want flat `name -> value` dictionaries, so per-domain vectors
become one scalar per domain, and the two loss statistics become the training losses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lossreweight.metric_names import LOSS_STATS, REWEIGHT_PREFIX, reweight_name
from lossreweight.reweighting import combine_stats, stats_to_python

Stats = dict[str, torch.Tensor]
# Parts kept before they are folded into one (combine_stats is associative): bounded memory
# for any logging interval, and one stack per key per FOLD calls.
FOLD = 32


class StatsAccumulator:
    """The statistics of the weight computations since the last `pop`, combined with
    `combine_stats`. `add` is a few device ops at most; nothing is read on the host until
    `pop` (one device-to-host copy)."""

    def __init__(self) -> None:
        self._parts: list[Stats] = []

    def add(self, stats: Stats) -> None:
        self._parts.append({k: v.detach() for k, v in stats.items()})
        if len(self._parts) >= FOLD:
            self._parts = [combine_stats(self._parts)]

    def __bool__(self) -> bool:
        return bool(self._parts)

    def pop_tensors(self) -> Stats:
        """The combined statistics as device tensors (no host sync), then reset."""
        out = combine_stats(self._parts)
        self._parts = []
        return out

    def pop(self) -> dict[str, float | list[float]]:
        """The combined statistics as Python numbers, then reset."""
        return stats_to_python(self.pop_tensors())


def logged_losses(stats: Stats) -> Stats:
    """`{"loss": unweighted mean, "weighted_loss": ...}` as device tensors; NaN when no sample
    was valid (0 would read as a perfect model)."""
    some = stats["num_samples"] > 0
    return {
        "loss": torch.where(some, stats["mean_loss"], torch.nan),
        "weighted_loss": torch.where(some, stats["weighted_loss"], torch.nan),
    }


def flatten(
    stats: dict, prefix: str = REWEIGHT_PREFIX, domain_names: Sequence[str] | None = None
) -> dict:
    """`{prefix + name: value}`, one entry per domain for per-domain vectors
    (`reweight/domain_weight_share/<name>`). Works on device tensors and on Python values;
    the loss statistics (`mean_loss`, `weighted_loss`) are left out: log them as the training
    losses `train/loss` and `train/weighted_loss` (lossreweight.metric_names)."""
    out: dict = {}
    for key, value in stats.items():
        if key in LOSS_STATS:
            continue
        is_vector = isinstance(value, list) or (isinstance(value, torch.Tensor) and value.dim() > 0)
        if not is_vector:
            out[reweight_name(key, prefix=prefix)] = value
            continue
        for d in range(len(value)):
            name = domain_names[d] if domain_names is not None and d < len(domain_names) else str(d)
            out[reweight_name(key, name, prefix=prefix)] = value[d]
    return out
