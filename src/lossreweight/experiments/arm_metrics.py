"""Per-arm metrics in the paper's terms, paired with a baseline arm seed by seed: validation
loss (token-weighted), its domain average, the worst domain (the GPT-2 code's third metric),
each domain, and steps to reach the baseline's final validation loss; every paired
difference with a 95% t-interval across seeds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lossreweight.experiments.runs import RunRecord
from lossreweight.experiments.summary import finite, mean, series, spread, std, steps_to_reach

Getter = Callable[[RunRecord], float | None]


def worst_domain_loss(run: RunRecord, domains: Sequence[str] | None = None) -> float | None:
    """The highest final validation loss over the domains (those in `domains` if given)."""
    by = run.final.get("val_loss_by_domain") or {}
    vals = [v for d, v in by.items() if (domains is None or d in domains) and finite(v)]
    return max(vals) if vals else None


def domain_avg(run: RunRecord, domains: Sequence[str]) -> float | None:
    by = run.final.get("val_loss_by_domain") or {}
    vals = [by.get(d) for d in domains]
    return mean(vals)


def _getters(domains: Sequence[str]) -> dict[str, Getter]:
    return {
        "val_loss": lambda r: r.final.get("val_loss"),
        "val_loss_domain_avg": lambda r: domain_avg(r, domains),
        "worst_domain_loss": lambda r: worst_domain_loss(r, domains),
    }


def _diffs(arm: Sequence[RunRecord], base: Sequence[RunRecord], get: Getter) -> list[float | None]:
    out = []
    for a, b in zip(arm, base, strict=True):
        x, y = get(a), get(b)
        out.append(x - y if finite(x) and finite(y) else None)
    return out


def arm_metrics(
    arm: Sequence[RunRecord], base: Sequence[RunRecord] | None, domains: Sequence[str]
) -> dict[str, Any]:
    """The summary.json block of one arm (runs in seed order; `base` the baseline's runs at
    the same seeds, or None for the baseline itself)."""
    g = _getters(domains)
    vals = {k: [get(r) for r in arm] for k, get in g.items()}
    by_dom = {d: [(r.final.get("val_loss_by_domain") or {}).get(d) for r in arm] for d in domains}
    out: dict[str, Any] = {
        "seeds": [r.seed for r in arm],
        **{k: mean(v) for k, v in vals.items()},
        "val_loss_by_domain": {d: mean(v) for d, v in by_dom.items()},
        "std": {
            **{k: std(v) for k, v in vals.items()},
            "val_loss_by_domain": {d: std(v) for d, v in by_dom.items()},
        },
        "per_seed": {**vals, "val_loss_by_domain": by_dom},
    }
    if base is None:
        return out
    p = spread(_diffs(arm, base, g["val_loss"]))
    for key in ("val_loss_domain_avg", "worst_domain_loss"):
        p[key] = spread(_diffs(arm, base, g[key]))
    p["val_loss_by_domain"] = {
        d: spread(
            _diffs(arm, base, lambda r, d=d: (r.final.get("val_loss_by_domain") or {}).get(d))
        )
        for d in domains
    }
    p["seeds_better"] = sum(1 for v in p["per_seed"] if v is not None and v < 0)
    out["paired_vs_uniform"] = p
    reach, speed = [], []
    for a, b in zip(arm, base, strict=True):
        target = b.final.get("val_loss")
        s_a = (
            steps_to_reach(*series(a, "val_loss", evals_only=True), target)
            if finite(target)
            else None
        )
        s_b = (
            steps_to_reach(*series(b, "val_loss", evals_only=True), target)
            if finite(target)
            else None
        )
        reach.append(s_a)
        speed.append(s_b / s_a if s_a and s_b else None)
    out["steps_to_uniform_final"] = {
        **spread(reach),
        "reached": sum(s is not None for s in reach),
        "of": len(reach),
    }
    out["speedup_vs_uniform"] = spread(
        speed
    )  # uniform's steps / the arm's, to uniform's final loss
    return out
