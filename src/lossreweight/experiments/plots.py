"""Every plot of the studies: Agg only, no pyplot global state.

Figures are built with `matplotlib.figure.Figure` on an Agg canvas, so these helpers never
open a window, never touch the process-wide pyplot backend, and are safe to call from tests.
Axes-level functions draw on an `Axes` you pass (compose panels freely); `new_figure` and
`save_figure` make and write the figure. Then the standard plots of a set of arms trained on
the same batches (loss curves, per-domain loss, weight diagnostics, domain weight shares) and
the plots of paired differences to a baseline with 95% intervals across seeds.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from lossreweight.experiments.stats import Records, stacked, t975
from lossreweight.metric_names import LOSS, TRAIN_LOSS, reweight_name
from lossreweight.safe_files import atomic_write

# Fixed colours for the built-in strategies so every plot of every study agrees.
STRATEGY_COLORS: dict[str, str] = {
    "uniform": "#444444",
    "linupper": "#d62728",
    "quadratic": "#1f77b4",
    "extremes": "#2ca02c",
    "linear": "#ff7f0e",
}
_CYCLE = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]


# The report page is 1100 px wide; at 120 dpi a 10-inch figure shows at about its own size.
MAX_WIDTH = 10.0


def color_for(name: str, index: int = 0) -> str:
    """The fixed colour of a known strategy, else a colour from a cycle by position."""
    return STRATEGY_COLORS.get(name, _CYCLE[index % len(_CYCLE)])


# -- figures --------------------------------------------------------------------------------
def new_figure(
    n_panels: int = 1,
    *,
    ncols: int | None = None,
    panel_size: tuple[float, float] = (5.0, 3.6),
    sharey: bool = False,
) -> tuple[Figure, list[Axes]]:
    """A figure with `n_panels` axes on a grid (row-major), on an Agg canvas, at most
    `MAX_WIDTH` inches wide: panels narrow rather than the figure outgrowing the page, where a
    browser would shrink its text below reading size."""
    ncols = min(n_panels, ncols or n_panels)
    nrows = math.ceil(n_panels / ncols)
    width = min(panel_size[0] * ncols, MAX_WIDTH)
    fig = Figure(figsize=(width, panel_size[1] * nrows))
    FigureCanvasAgg(fig)
    grid = fig.subplots(nrows, ncols, sharey=sharey, squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[n_panels:]:
        ax.set_visible(False)  # unused cells of the last row
    return fig, axes[:n_panels]


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 120) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    atomic_write(path, buf.getvalue())  # a link at `path` is replaced, its target untouched
    return path


# -- axes-level plots -----------------------------------------------------------------------
def plot_mean_spread(
    ax: Axes,
    curves: Mapping[str, Any],
    *,
    x: Any | None = None,
    band: bool = True,
    logy: bool = True,
    title: str = "",
    xlabel: str = "step",
    ylabel: str = "",
    hline: float | None = None,
    hline_label: str = "",
    ylim: tuple[float | None, float | None] | None = None,
    colors: Mapping[str, str] | None = None,
    styles: Mapping[str, str] | None = None,
) -> None:
    """Mean over runs (rows of each [runs, T] array) with a shaded spread, one line per label.

    `band` shades the range over runs (min to max). Non-finite values (e.g. a diverged run)
    are treated as missing: the mean stops where any run is missing, so a line never hides a
    failure. `ylim` clips the view (a log axis over dozens of decades is unreadable and slow
    to lay out). `x` may also map each label to its own x values
    (runs logged at different steps); `colors` and `styles` (line styles) override the
    defaults per label.
    """
    for i, (name, values) in enumerate(curves.items()):
        y = np.asarray(values, dtype=float)
        y = np.where(np.isfinite(y), y, np.nan).reshape(-1, y.shape[-1])
        x_of = x.get(name) if isinstance(x, Mapping) else x
        xs = np.arange(y.shape[-1]) if x_of is None else np.asarray(x_of)
        color = (colors or {}).get(name) or color_for(name, i)
        mean = y.mean(axis=0)
        ax.plot(xs, mean, color=color, label=name, lw=1.6, ls=(styles or {}).get(name, "-"))
        if band and y.shape[0] > 1:
            ax.fill_between(xs, y.min(axis=0), y.max(axis=0), color=color, alpha=0.18, lw=0)
    if hline is not None:
        ax.axhline(hline, color="black", ls=":", lw=1, label=hline_label or None)
    if logy:
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(NullLocator())  # clutter, and most of the draw time
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)


def _ok(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def plot_grouped_bars(
    ax: Axes,
    values: Mapping[str, Mapping[str, float | None]],
    *,
    errors: Mapping[str, Mapping[str, float | None]] | None = None,
    logy: bool = False,
    missing_label: str = "n/a",
    missing_labels: Mapping[str, Mapping[str, str]] | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    colors: Mapping[str, str] | None = None,
    from_zero: bool = True,
) -> None:
    """Bars grouped by category (outer keys) with one bar per series (inner keys).

    A missing value (None or non-finite) draws no bar but prints a label at its place
    (`missing_labels[category][series]`, else `missing_label`), so "did not reach" or
    "diverged" stays visible instead of looking like zero. `from_zero=False` (linear axis)
    frames the bars' range with their error bars instead of starting at 0, so small gaps
    between close losses are visible.
    """
    categories = list(values)
    series: list[str] = []
    for inner in values.values():
        series += [s for s in inner if s not in series]
    width = 0.8 / max(len(series), 1)
    err = {c: {n: e for n, e in (errors or {}).get(c, {}).items() if _ok(e)} for c in values}
    shown = [(c, n, v) for c, inner in values.items() for n, v in inner.items() if _ok(v)]
    base = (min(v for *_, v in shown) if logy else 0.0) if shown else 1.0
    if not from_zero and not logy and shown:
        ends = [v + sign * err[c].get(n, 0.0) for c, n, v in shown for sign in (-1.0, 1.0)]
        lo, hi = min(ends), max(ends)
        pad = 0.15 * (hi - lo) or 0.05 * abs(hi) or 1.0
        ax.set_ylim(lo - pad, hi + pad)
        base = lo - pad
    for j, name in enumerate(series):
        color = (colors or {}).get(name) or color_for(name, j)
        xs = np.arange(len(categories)) - 0.4 + width * (j + 0.5)
        labelled = False  # each series in the legend once
        for x, cat in zip(xs, categories, strict=True):
            v = values[cat].get(name)
            if not _ok(v):
                text = (missing_labels or {}).get(cat, {}).get(name, missing_label)
                ax.text(
                    x, base, text, ha="center", va="bottom", fontsize=7, rotation=90, color=color
                )
                continue
            e = err[cat].get(name)
            ax.bar(x, v, width, color=color, label=None if labelled else name, yerr=e, capsize=2)
            labelled = True
    ax.set_xticks(np.arange(len(categories)), categories)
    if logy:
        ax.set_yscale("log")
        # Plain numbers at 1-2-5 steps read better than 2x10^1 on a bar chart.
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def colors_for(names: Sequence[str]) -> dict[str, str]:
    """A distinct colour per label: the fixed colour of a known strategy, else the next colour
    of the cycle (so labels like "r=0.2" do not all get the cycle's first colour)."""
    palette = _CYCLE + ["#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94"]
    out: dict[str, str] = {}
    k = 0
    used: set[str] = set()
    for name in names:
        # "linupper-r0.4" or "linupper@noise10" takes its strategy's colour, once.
        stem = re.split(r"[-@]", name, maxsplit=1)[0]
        if name in STRATEGY_COLORS:
            out[name] = STRATEGY_COLORS[name]
        elif stem in STRATEGY_COLORS and STRATEGY_COLORS[stem] not in used:
            out[name] = STRATEGY_COLORS[stem]
        else:
            out[name] = palette[k % len(palette)]
            k += 1
        used.add(out[name])
    return out


# -- the standard plots of an arm comparison ----------------------------------------------
# The weight diagnostics plotted over training (the Reweighter's statistics, reweight/<stat>),
# with their axis labels.
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
    """train/loss (every logged step, mean and min-max over seeds) and eval/loss at evaluations."""
    colors = colors or colors_for(list(records))
    fig, axes = new_figure(2, panel_size=(6.0, 4.0))
    panels = (
        (
            TRAIN_LOSS,
            3,
            "train loss, nats (3-record avg)",
            "training loss (mean, min-max over seeds)",
        ),
        (LOSS, 1, "validation loss (nats)", "validation loss at evaluations"),
    )
    for ax, (key, window, ylabel, name) in zip(axes, panels, strict=True):
        xs, ys = _curves(records, key, evals_only=key == LOSS, window=window)
        plot_mean_spread(ax, ys, x=xs, logy=False, colors=colors, ylabel=ylabel, title=name)
    # The whole curve, nothing clipped (the paired-difference plots show the small gaps).
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


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
    colors = colors or colors_for(arms)
    cats = [*summary["domains"], "avg"]

    def at(d: Mapping[str, Any], c: str) -> Any:  # a domain's entry, or the domain average's
        return d.get("val_loss_domain_avg") if c == "avg" else d["val_loss_by_domain"].get(c)

    values = {c: {a: at(runs[a], c) for a in arms} for c in cats}
    errors = {c: {a: at(runs[a]["std"], c) for a in arms} for c in cats}
    key = f"diff_vs_{relative_to}"
    paired = relative_to is not None and any(key in runs[a] for a in arms if a != relative_to)
    width = min(10.0, max(8.0, 1.3 * len(cats) + 0.4 * len(arms)))  # the page's width at most
    fig, axes = new_figure(2 if paired else 1, ncols=1, panel_size=(width, 3.8))
    plot_grouped_bars(
        axes[0],
        values,
        errors=errors,
        colors=colors,
        ylabel="validation loss (nats)",
        title="final validation loss per domain (mean +- std over seeds; axis not from 0)",
        from_zero=False,
    )
    if paired:
        diffs = {
            c: {a: at(runs[a][key], c) or {} for a in arms if a != relative_to and key in runs[a]}
            for c in cats
        }
        plot_grouped_bars(
            axes[1],
            {c: {a: d.get("mean") for a, d in row.items()} for c, row in diffs.items()},
            errors={c: {a: d.get("std") for a, d in row.items()} for c, row in diffs.items()},
            colors=colors,
            ylabel=f"val loss - {relative_to}",
            title=f"paired difference to {relative_to} per seed (below 0: better)",
        )
        axes[1].axhline(0.0, color="black", lw=0.8)
    return save_figure(fig, path)


def plot_weight_diagnostics(
    path: Path, records: Records, *, colors: Mapping[str, str] | None = None, window: int = 3
) -> Path:
    colors = colors or colors_for(list(records))
    fig, axes = new_figure(len(DIAGNOSTICS), ncols=2, panel_size=(5.5, 3.5))
    for ax, (key, label) in zip(axes, DIAGNOSTICS, strict=True):
        xs, ys = _curves(records, reweight_name(key), window=1 if key == "temperature" else window)
        logy = key == "temperature" and any(
            np.nanmax(y) / max(np.nanmin(y), 1e-9) > 20 for y in ys.values()
        )
        plot_mean_spread(
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
    return save_figure(fig, path)


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
    colors = colors or colors_for(list(records))
    fig, axes = new_figure(len(domains), ncols=3, panel_size=(4.6, 3.2))
    for ax, d in zip(axes, domains, strict=True):
        # uniform's weight share is its sample share by construction: not drawn twice.
        weighted = [a for a in records if a != "uniform"] or list(records)
        weight = reweight_name("domain_weight_share", d)
        sample = reweight_name("domain_sample_share", d)
        x_of, curves = _curves(records, weight, window=window, arms=weighted)
        sx, sy = _curves(records, sample, window=window, arms=list(records)[:1])
        for first in sy:  # (one arm's: the samples are the same for all)
            x_of["sample share"], curves["sample share"] = sx[first], sy[first]
        plot_mean_spread(
            ax,
            curves,
            x=x_of,
            logy=False,
            band=False,
            colors={**colors, "sample share": "black"},
            styles={"sample share": "--"},
            ylabel="share of batch",
            title=f"{d} ({window}-record avg)",
        )
    return save_figure(fig, path)


def plot_share_ratio(
    path: Path, summary: Mapping[str, Any], *, colors: Mapping[str, str] | None = None
) -> Path:
    """Weight share / sample share per domain, averaged over training (1 = no change)."""
    runs = summary["runs"]
    colors = colors or colors_for(list(runs))

    def ratio(w: Mapping[str, Any], d: str) -> float | None:
        share, n = w.get("domain_weight_share", {}).get(d), w.get("domain_sample_share", {}).get(d)
        return share / n if share is not None and n else None

    values = {d: {a: ratio(r["weights"], d) for a, r in runs.items()} for d in summary["domains"]}
    fig, (ax,) = new_figure(1, panel_size=(min(10.0, max(7.0, 1.2 * len(values))), 3.6))
    plot_grouped_bars(
        ax,
        values,
        colors=colors,
        ylabel="weight share / sample share",
        title="how much each domain is up- or down-weighted (mean over training)",
    )
    ax.axhline(1.0, color="black", lw=0.8)
    return save_figure(fig, path)


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
    colors = colors or colors_for(list(records))
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


# -- paired differences to a baseline ----------------------------------------------------
def plot_paired_curves(
    path: Path,
    records: Records,
    baseline: str,
    arms: Sequence[str],
    *,
    key: str = LOSS,
    label: str = "val_loss",
    colors: Mapping[str, str] | None = None,
    pairs: Mapping[str, str] | None = None,
) -> Path:
    """key(arm) - key(baseline) at every evaluation (a metric name), the mean over seeds with a
    95% t-interval band (several seeds only), drawn as `label`. `pairs` maps an arm to another
    baseline arm."""
    colors = colors or colors_for(list(arms))
    fig, (ax,) = new_figure(1, panel_size=(8.0, 4.2))
    for arm in arms:
        base = (pairs or {}).get(arm, baseline)
        seeds = sorted(set(records[arm]) & set(records[base]))
        runs = [records[arm][s] for s in seeds] + [records[base][s] for s in seeds]
        common, y = stacked(runs, key, evals_only=True)  # at the steps every run evaluated
        if not common.size:
            continue
        d = y[: len(seeds)] - y[len(seeds) :]
        mean = d.mean(axis=0)
        ax.plot(common, mean, color=colors.get(arm), label=arm, lw=1.6)
        if d.shape[0] > 1:
            half = t975(d.shape[0] - 1) * d.std(axis=0, ddof=1) / np.sqrt(d.shape[0])
            ax.fill_between(
                common, mean - half, mean + half, color=colors.get(arm), alpha=0.18, lw=0
            )
    ax.axhline(0.0, color="black", lw=0.8)
    band = " (band: 95% interval over seeds)" if len(next(iter(records.values()), {})) > 1 else ""
    title = f"paired {label} difference over training{band}"
    ax.set(xlabel="step", ylabel=f"{label} - {baseline} (nats)", title=title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
