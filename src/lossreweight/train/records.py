"""The metric names of a training step (docs/metrics.md lists every key of metrics.jsonl).

train/loss             unweighted mean per-sample loss of the step (comparable across strategies)
train/weighted_loss    the loss that was backpropagated (the reweighted one)
train/lr, train/grad_norm (before clipping), train/skipped (the update was not applied)
reweight/<statistic>   the Reweighter's statistics, combined over micro-batches
reweight/<statistic>/<domain>  per-domain statistics (domain_weight_share, ...)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# The Reweighter's statistics that are training losses, and their names.
LOSS_NAMES = {"mean_loss": "train/loss", "weighted_loss": "train/weighted_loss"}
COUNTS = ("num_samples", "num_invalid")


def step_metrics(
    values: Mapping[str, Any], *, lr: float, domains: Sequence[str], skipped: bool
) -> dict[str, Any]:
    """Name one step's values (host numbers: the Reweighter's statistics and `grad_norm`)."""
    record: dict[str, Any] = {
        "train/loss": values.get("mean_loss"),
        "train/weighted_loss": values.get("weighted_loss"),
        "train/lr": lr,
        "train/grad_norm": values.get("grad_norm"),
        "train/skipped": skipped,
    }
    for key, value in values.items():
        if key in LOSS_NAMES or key == "grad_norm":
            continue
        if isinstance(value, list):  # one value per domain
            record.update({f"reweight/{key}/{d}": v for d, v in zip(domains, value, strict=True)})
        elif key in COUNTS and value == value:  # not NaN
            record[f"reweight/{key}"] = int(round(value))
        else:
            record[f"reweight/{key}"] = value
    return record


def rate_metrics(tokens_per_s: float, mfu: float | None) -> dict[str, float]:
    out = {"train/tokens_per_s": tokens_per_s}
    if mfu is not None:
        out["train/mfu"] = mfu
    return out
