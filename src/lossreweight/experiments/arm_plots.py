"""The standard plots of a set of arms trained on the same batches (compare and the studies):
loss curves, per-domain validation loss, weight diagnostics over time, and each domain's
weight share against its sample share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lossreweight.experiments import plotting as P
from lossreweight.experiments.runs import RunRecord
from lossreweight.experiments.summary import Records, stacked

# The weight diagnostics plotted over training, with their axis labels.
DIAGNOSTICS: tuple[tuple[str, str], ...] = (
    ("max_weight_x_m", "max(w) x M  (1 = uniform)"),
    ("ess_fraction", "effective sample size / M"),
    ("weight_loss_corr", "corr(weight, loss)"),
    ("temperature", "temperature r"),
)


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average along the last axis (the first points average fewer values)."""
    if window <= 1 or y.shape[-1] == 0:
        return y
    c = np.cumsum(np.concatenate([np.zeros((*y.shape[:-1], 1)), y], axis=-1), axis=-1)
    idx = np.arange(1, y.shape[-1] + 1)
    lo = np.maximum(idx - window, 0)
    return (c[..., idx] - c[..., lo]) / (idx - lo)


def _curves(
    records: Records,
    key: str,
    *,
    evals_only: bool = False,
    window: int = 1,
    arms: Sequence[str] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    xs, ys = {}, {}
    for arm in arms or list(records):
        runs = [records[arm][s] for s in sorted(records[arm])]
        x, y = stacked(runs, key, evals_only=evals_only)
        if x.size:
            xs[arm], ys[arm] = x, smooth(y, window)
    return xs, ys


def plot_loss_curves(
    path: Path, records: Records, *, colors: Mapping[str, str] | None = None, title: str = ""
) -> Path:
    """train_loss (every logged step, mean and min-max over seeds) and val_loss at evaluations."""
    colors = colors or P.colors_for(list(records))
    fig, (a1, a2) = P.new_figure(2, panel_size=(6.0, 4.0))
    xs, ys = _curves(records, "train_loss", window=3)
    P.plot_mean_spread(
        a1,
        ys,
        x=xs,
        logy=False,
        colors=colors,
        ylabel="train loss, nats (3-record avg)",
        title="training loss (mean, min-max over seeds)",
    )
    xs, ys = _curves(records, "val_loss", evals_only=True)
    P.plot_mean_spread(
        a2,
        ys,
        x=xs,
        logy=False,
        colors=colors,
        ylabel="validation loss (nats)",
        title="validation loss at evaluations",
    )
    # The whole curve, nothing clipped (the paired-difference plots show the small gaps).
    if title:
        fig.suptitle(title)
    return P.save_figure(fig, path)


def plot_domain_bars(
    path: Path,
    summary: Mapping[str, Any],
    *,
    colors: Mapping[str, str] | None = None,
    relative_to: str | None = None,
) -> Path:
    """Final validation loss per domain (and the domain average): mean and std over seeds.

    With `relative_to` (the baseline arm) a second panel shows arm - baseline per domain,
    mean and std of the per-seed paired differences.
    """
    runs = summary["runs"]
    arms = list(runs)
    colors = colors or P.colors_for(arms)
    cats = [*summary["domains"], "avg"]
    values = {
        c: {
            a: (
                runs[a]["val_loss_domain_avg"]
                if c == "avg"
                else runs[a]["val_loss_by_domain"].get(c)
            )
            for a in arms
        }
        for c in cats
    }
    errors = {
        c: {
            a: (
                runs[a]["std"]["val_loss_domain_avg"]
                if c == "avg"
                else runs[a]["std"]["val_loss_by_domain"].get(c)
            )
            for a in arms
        }
        for c in cats
    }
    key = f"diff_vs_{relative_to}"
    paired = relative_to is not None and any(key in runs[a] for a in arms if a != relative_to)
    fig, axes = P.new_figure(
        2 if paired else 1, ncols=1, panel_size=(max(8.0, 1.3 * len(cats) + 0.4 * len(arms)), 3.8)
    )
    P.plot_grouped_bars(
        axes[0],
        values,
        errors=errors,
        colors=colors,
        ylabel="validation loss (nats)",
        title="final validation loss per domain (mean +- std over seeds)",
    )
    axes[0].margins(
        y=0.1
    )  # whole bars from 0: nothing clipped (the differences are in the panel below)
    if paired:
        others = [a for a in arms if a != relative_to and key in runs[a]]
        dv, de = {}, {}
        for c in cats:
            dv[c], de[c] = {}, {}
            for a in others:
                d = runs[a][key]["val_loss_domain_avg" if c == "avg" else "val_loss_by_domain"]
                d = d if c == "avg" else d.get(c, {})
                dv[c][a], de[c][a] = d.get("mean"), d.get("std")
        P.plot_grouped_bars(
            axes[1],
            dv,
            errors=de,
            colors=colors,
            ylabel=f"val loss - {relative_to}",
            title=f"paired difference to {relative_to} per seed (below 0: better)",
        )
        axes[1].axhline(0.0, color="black", lw=0.8)
    return P.save_figure(fig, path)


def plot_weight_diagnostics(
    path: Path, records: Records, *, colors: Mapping[str, str] | None = None, window: int = 3
) -> Path:
    colors = colors or P.colors_for(list(records))
    fig, axes = P.new_figure(len(DIAGNOSTICS), ncols=2, panel_size=(5.5, 3.5))
    for ax, (key, label) in zip(axes, DIAGNOSTICS, strict=True):
        xs, ys = _curves(records, key, window=1 if key == "temperature" else window)
        logy = key == "temperature" and any(
            np.nanmax(y) / max(np.nanmin(y), 1e-9) > 20 for y in ys.values()
        )
        P.plot_mean_spread(
            ax,
            ys,
            x=xs,
            logy=logy,
            colors=colors,
            ylabel=label,
            hline=2.0 if key == "max_weight_x_m" else None,
            hline_label="2 (the paper's bound)" if key == "max_weight_x_m" else "",
            title=label.split("  ")[0]
            + (f" ({window}-record avg)" if window > 1 and key != "temperature" else ""),
        )
    return P.save_figure(fig, path)


def plot_domain_shares(
    path: Path,
    records: Records,
    domains: Sequence[str],
    *,
    colors: Mapping[str, str] | None = None,
    window: int = 5,
) -> Path:
    """Per domain: each arm's share of the batch weight over training against the domain's
    share of the samples (dashed, black)."""
    colors = colors or P.colors_for(list(records))
    fig, axes = P.new_figure(len(domains), ncols=3, panel_size=(4.6, 3.2))
    for ax, d in zip(axes, domains, strict=True):
        # uniform's weight share is its sample share by construction: not drawn twice.
        weighted = [a for a in records if a != "uniform"] or list(records)
        xs, ys = _curves(records, f"domain_weight_share.{d}", window=window, arms=weighted)
        sx, sy = _curves(records, f"domain_sample_share.{d}", window=window, arms=list(records)[:1])
        curves = dict(ys)
        x_of = dict(xs)
        if sy:
            (first,) = sy
            curves["sample share"] = sy[first]
            x_of["sample share"] = sx[first]
        P.plot_mean_spread(
            ax,
            curves,
            x=x_of,
            logy=False,
            band="none",
            colors={**colors, "sample share": "black"},
            styles={"sample share": "--"},
            ylabel="share of batch",
            title=f"{d} ({window}-record avg)",
        )
    return P.save_figure(fig, path)


def plot_share_ratio(
    path: Path, summary: Mapping[str, Any], *, colors: Mapping[str, str] | None = None
) -> Path:
    """Weight share / sample share per domain, averaged over training (1 = no change)."""
    runs = summary["runs"]
    colors = colors or P.colors_for(list(runs))
    values: dict[str, dict[str, float | None]] = {}
    for d in summary["domains"]:
        values[d] = {}
        for arm, r in runs.items():
            w = r["weights"].get("domain_weight_share", {}).get(d)
            n = r["weights"].get("domain_sample_share", {}).get(d)
            values[d][arm] = w / n if w is not None and n else None
    fig, (ax,) = P.new_figure(1, panel_size=(max(7.0, 1.2 * len(values)), 3.6))
    P.plot_grouped_bars(
        ax,
        values,
        colors=colors,
        ylabel="weight share / sample share",
        title="how much each domain is up- or down-weighted (mean over training)",
    )
    ax.axhline(1.0, color="black", lw=0.8)
    return P.save_figure(fig, path)


def standard_plots(
    out: Path,
    records: Records,
    summary: Mapping[str, Any],
    *,
    prefix: str = "",
    colors: Mapping[str, str] | None = None,
    baseline: str | None = "uniform",
) -> dict[str, str]:
    """Write the standard plots into `out`; returns {name: file name}."""
    colors = colors or P.colors_for(list(records))
    files = {
        "loss_curves": plot_loss_curves(out / f"{prefix}loss_curves.png", records, colors=colors),
        "val_loss_by_domain": plot_domain_bars(
            out / f"{prefix}val_loss_by_domain.png",
            summary,
            colors=colors,
            relative_to=summary.get("baseline") and baseline,
        ),
        "weight_diagnostics": plot_weight_diagnostics(
            out / f"{prefix}weight_diagnostics.png", records, colors=colors
        ),
        "domain_weight_share": plot_domain_shares(
            out / f"{prefix}domain_weight_share.png", records, summary["domains"], colors=colors
        ),
        "domain_share_ratio": plot_share_ratio(
            out / f"{prefix}domain_share_ratio.png", summary, colors=colors
        ),
    }
    return {k: Path(v).name for k, v in files.items()}


def runs_of(records: Records, arm: str) -> list[RunRecord]:
    return [records[arm][s] for s in sorted(records[arm])]
