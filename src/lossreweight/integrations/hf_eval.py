"""Evaluation over several domains the Hugging Face way, plus the summary the paper reports.

`Trainer(eval_dataset={"code": ds1, "wiki": ds2})` already evaluates each dataset and names
its metrics `eval_code_loss`, `eval_wiki_loss`, ... After all of them, these functions add
`eval_domain_avg_loss` (the unweighted mean over domains) and `eval_worst_domain_loss`
(the highest), which `metric_for_best_model` can name like any other metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch


def domain_summary(
    metrics: Mapping[str, Any], names: Iterable[str], prefix: str = "eval"
) -> dict[str, float]:
    """`{prefix}_domain_avg_loss` and `{prefix}_worst_domain_loss` from the per-domain
    `{prefix}_{name}_loss` metrics; {} unless every domain has one. A NaN domain loss makes
    both NaN (a domain with no valid sample is not silently dropped)."""
    losses = [metrics.get(f"{prefix}_{name}_loss") for name in names]
    if not losses or any(v is None for v in losses):
        return {}
    values = [float(v) for v in losses]
    if any(math.isnan(v) for v in values):
        return {f"{prefix}_domain_avg_loss": math.nan, f"{prefix}_worst_domain_loss": math.nan}
    return {
        f"{prefix}_domain_avg_loss": sum(values) / len(values),
        f"{prefix}_worst_domain_loss": max(values),
    }


def eval_batch_loss(losses: torch.Tensor) -> torch.Tensor:
    """One evaluation batch's loss: the mean of its per-sample mean losses over the samples
    that have a target. The Trainer averages batch losses weighted by batch size, so
    `eval_loss` is the mean of per-sample means over the dataset (exact when every sample has
    a target), the quantity the training `loss` and the reweighting strategies are about."""
    valid = torch.isfinite(losses)
    n = valid.sum()
    total = torch.where(valid, losses, 0.0).sum()
    return torch.where(n > 0, total / n.clamp(min=1), torch.nan)
