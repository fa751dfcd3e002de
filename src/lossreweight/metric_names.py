"""Metric names shared by metrics.jsonl, TensorBoard, wandb, eval curves and reports.

Validation loss (nats per token):
    eval/loss                 token-weighted mean over all validation tokens
    eval/domain_avg_loss      mean of the per-domain losses (each domain counts once)
    eval/worst_domain_loss    the highest per-domain loss
    eval/<domain>/loss        one domain
Downstream (lm-evaluation-harness):
    downstream/<task>/<metric>           e.g. downstream/sciq/acc, downstream/sciq/acc_norm
    downstream/<task>/<metric>_stderr    its standard error, when lm-eval computed one
    downstream/<task>/<metric>/<filter>  for a metric under a filter other than lm-eval's "none"
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

LOSS = "eval/loss"
DOMAIN_AVG_LOSS = "eval/domain_avg_loss"
WORST_DOMAIN_LOSS = "eval/worst_domain_loss"


def domain_loss_name(domain: str) -> str:
    return f"eval/{domain}/loss"


def eval_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The standard names for a result of `lossreweight.train.evaluate.evaluate`."""
    by_domain: Mapping[str, float] = result["val_loss_by_domain"]
    out = {LOSS: float(result["val_loss"]), DOMAIN_AVG_LOSS: float(result["val_loss_domain_avg"])}
    if by_domain:
        out[WORST_DOMAIN_LOSS] = float(max(by_domain.values()))
    out.update({domain_loss_name(d): float(v) for d, v in by_domain.items()})
    return out


def worst_domain(result: Mapping[str, Any]) -> str | None:
    by_domain: Mapping[str, float] = result["val_loss_by_domain"]
    return max(by_domain, key=by_domain.__getitem__) if by_domain else None


def downstream_metrics(results: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """Flatten lm-eval's `results` ({task: {"acc,none": 0.5, "acc_stderr,none": "N/A", ...}})
    into `downstream/<task>/<metric>` names. Scores lm-eval could not compute ("N/A") are left
    out; a NaN score is kept as None so the JSON stays valid and the gap stays visible."""
    out: dict[str, float | None] = {}
    for task, scores in results.items():
        for key, value in scores.items():
            if "," not in key or isinstance(value, bool) or not isinstance(value, int | float):
                continue  # "alias", "name", "sample_len", or an "N/A" stderr
            metric, filt = key.split(",", 1)
            name = f"downstream/{task}/{metric}" + ("" if filt == "none" else f"/{filt}")
            out[name] = float(value) if math.isfinite(value) else None
    return out
