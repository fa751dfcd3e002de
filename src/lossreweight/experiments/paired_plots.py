"""Plots of paired differences to a baseline arm, with 95% intervals across seeds: the final
differences per metric (bars), and the difference over training (curves). Losses in nats;
intervals only where there are several seeds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lossreweight.experiments import plotting as P
from lossreweight.experiments.summary import Records, stacked, t975


def plot_paired_bars(
    path: Path,
    summary: Mapping[str, Any],
    arms: Sequence[str],
    metrics: Mapping[str, Sequence[str]],
    *,
    key: str = "paired_vs_uniform",
    colors: Mapping[str, str] | None = None,
    title: str = "",
) -> Path:
    """Grouped bars: for each metric (label -> path of keys below `arms[a][key]`; an empty
    path is the block itself), each arm's mean paired difference with its 95% interval."""
    colors = colors or P.colors_for(list(arms))
    fig, (ax,) = P.new_figure(
        1, panel_size=(max(7.0, 1.1 * len(metrics) * max(1, len(arms)) / 2 + 3), 4.0)
    )
    width = 0.8 / max(1, len(arms))
    xs = np.arange(len(metrics))
    for i, arm in enumerate(arms):
        block = summary["arms"][arm][key]
        means, lo, hi = [], [], []
        for keys in metrics.values():
            d = block
            for k in keys:
                d = d[k]
            mean = d.get("mean")
            ci = d.get("ci95")
            means.append(np.nan if mean is None else mean)
            lo.append(0.0 if not ci or mean is None else mean - ci[0])
            hi.append(0.0 if not ci or mean is None else ci[1] - mean)
        has_ci = any(v > 0 for v in lo + hi)
        ax.bar(
            xs + (i - (len(arms) - 1) / 2) * width,
            means,
            width,
            color=colors.get(arm),
            label=arm,
            yerr=np.array([lo, hi]) if has_ci else None,
            capsize=3,
            ecolor="black",
        )
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xticks(xs)
    ax.set_xticklabels(list(metrics), rotation=20, ha="right")
    ax.set_ylabel("arm - uniform (nats; below 0: better)")
    n = len(summary.get("seeds", []))
    ax.set_title(
        title
        or (
            f"paired difference to uniform, mean and 95% interval over {n} seeds"
            if n > 1
            else "difference to uniform (one seed: no interval)"
        )
    )
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.margins(y=0.15)  # error bars and labels stay inside the axes
    return P.save_figure(fig, path)


def plot_paired_curves(
    path: Path,
    records: Records,
    baseline: str,
    arms: Sequence[str],
    *,
    key: str = "val_loss",
    colors: Mapping[str, str] | None = None,
    pairs: Mapping[str, str] | None = None,
) -> Path:
    """key(arm) - key(baseline) at every evaluation, the mean over seeds with a 95% t-interval
    band (several seeds only). `pairs` maps an arm to another baseline arm."""
    colors = colors or P.colors_for(list(arms))
    fig, (ax,) = P.new_figure(1, panel_size=(8.0, 4.2))
    for arm in arms:
        base = (pairs or {}).get(arm, baseline)
        seeds = sorted(set(records[arm]) & set(records[base]))
        xa, ya = stacked([records[arm][s] for s in seeds], key, evals_only=True)
        xb, yb = stacked([records[base][s] for s in seeds], key, evals_only=True)
        common = sorted(set(xa.tolist()) & set(xb.tolist()))
        if not common:
            continue
        ia = [xa.tolist().index(c) for c in common]
        ib = [xb.tolist().index(c) for c in common]
        d = ya[:, ia] - yb[:, ib]
        mean = d.mean(axis=0)
        ax.plot(common, mean, color=colors.get(arm), label=arm, lw=1.6)
        if d.shape[0] > 1:
            half = t975(d.shape[0] - 1) * d.std(axis=0, ddof=1) / np.sqrt(d.shape[0])
            ax.fill_between(
                common, mean - half, mean + half, color=colors.get(arm), alpha=0.18, lw=0
            )
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel(f"{key} - {baseline} (nats)")
    n = len(next(iter(records.values()), {}))
    ax.set_title(
        f"paired {key} difference over training"
        + (" (band: 95% interval over seeds)" if n > 1 else "")
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return P.save_figure(fig, path)


def plot_share_bars(path: Path, arms: Mapping[str, Mapping[str, Any]]) -> Path:
    """Per corrupted mix, each arm's weight share of the corrupted sequences next to their
    sample share (the dashed line): above it, the arm up-weights them."""
    conds = [c for c in dict.fromkeys(a["condition"] for a in arms.values()) if c != "clean"]
    strategies = list(dict.fromkeys(name.split("@")[0] for name in arms))
    colors = P.colors_for(strategies)
    fig, (ax,) = P.new_figure(1, panel_size=(max(6.0, 2.2 * len(conds)), 4.0))
    width = 0.8 / max(1, len(strategies))
    for j, cond in enumerate(conds):
        for i, s in enumerate(strategies):
            a = arms.get(f"{s}@{cond}")
            if a is None or a["corrupted_weight_share"] is None:
                continue
            ax.bar(
                j + (i - (len(strategies) - 1) / 2) * width,
                a["corrupted_weight_share"],
                width,
                color=colors[s],
                label=s if j == 0 else None,
            )
        share = next(
            (a["corrupted_sample_share"] for a in arms.values() if a["condition"] == cond), None
        )
        if share is not None:
            ax.hlines(
                share,
                j - 0.45,
                j + 0.45,
                colors="black",
                linestyles="--",
                label="sample share" if j == 0 else None,
            )
    ax.set_xticks(range(len(conds)))
    ax.set_xticklabels(conds)
    ax.set_ylabel("share of batch weight (after burn-in)")
    ax.set_title("weight on the corrupted sequences vs their share of the samples")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.margins(y=0.15)
    return P.save_figure(fig, path)
