"""Plot and report helpers shared by the studies: Agg only, no pyplot global state.

Figures are built with `matplotlib.figure.Figure` on an Agg canvas, so these helpers never
open a window, never touch the process-wide pyplot backend, and are safe to call from tests.
Axes-level functions draw on an `Axes` you pass (compose panels freely); `new_figure` and
`save_figure` make and write the figure. `write_html_report` turns headings, text, PNGs and
tables into one static page.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

# Fixed colours for the built-in strategies so every plot of every study agrees.
STRATEGY_COLORS: dict[str, str] = {
    "uniform": "#444444",
    "linupper": "#d62728",
    "quadratic": "#1f77b4",
    "extremes": "#2ca02c",
    "linear": "#ff7f0e",
}
_CYCLE = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]


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
    """A figure with `n_panels` axes on a grid (row-major), on an Agg canvas."""
    ncols = min(n_panels, ncols or n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows))
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
    fig.savefig(path, dpi=dpi)
    return path


def _label(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    if title:
        ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)


# -- axes-level plots -----------------------------------------------------------------------
def plot_mean_spread(
    ax: Axes,
    curves: Mapping[str, Any],
    *,
    x: Any | None = None,
    band: str = "minmax",
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

    band: "minmax" (range over runs), "std" (mean +- one std) or "none". Non-finite values
    (e.g. a diverged run) are treated as missing: the mean stops where any run is missing,
    so a line never hides a failure. `ylim` clips the view (a log axis over dozens of decades
    is unreadable and slow to lay out). `x` may also map each label to its own x values
    (runs logged at different steps); `colors` and `styles` (line styles) override the
    defaults per label.
    """
    if band not in ("minmax", "std", "none"):
        raise ValueError(f"band must be 'minmax', 'std' or 'none', got {band!r}")
    for i, (name, values) in enumerate(curves.items()):
        y = np.asarray(values, dtype=float)
        y = np.where(np.isfinite(y), y, np.nan).reshape(-1, y.shape[-1])
        x_of = x.get(name) if isinstance(x, Mapping) else x
        xs = np.arange(y.shape[-1]) if x_of is None else np.asarray(x_of)
        color = (colors or {}).get(name) or color_for(name, i)
        mean = y.mean(axis=0)
        ax.plot(xs, mean, color=color, label=name, lw=1.6, ls=(styles or {}).get(name, "-"))
        if band == "minmax" and y.shape[0] > 1:
            ax.fill_between(xs, y.min(axis=0), y.max(axis=0), color=color, alpha=0.18, lw=0)
        elif band == "std" and y.shape[0] > 1:
            sd = y.std(axis=0)
            lo = np.where(mean - sd > 0, mean - sd, np.nan) if logy else mean - sd
            ax.fill_between(xs, lo, mean + sd, color=color, alpha=0.18, lw=0)
    if hline is not None:
        ax.axhline(hline, color="black", ls=":", lw=1, label=hline_label or None)
    if logy:
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(
            NullLocator()
        )  # minor log ticks: clutter, and most of the draw time
    if ylim is not None:
        ax.set_ylim(*ylim)
    _label(ax, title, xlabel, ylabel)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)


def plot_lines(
    ax: Axes,
    x: Any,
    ys: Mapping[str, Any],
    *,
    logy: bool = False,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    colors: Mapping[str, str] | None = None,
    styles: Mapping[str, str] | None = None,
) -> None:
    """Plain curves y(x), one per label (e.g. weight as a function of the normalised loss).
    `x` may map each label to its own x values; `colors`/`styles` override per label."""
    for i, (name, y) in enumerate(ys.items()):
        xs = x.get(name) if isinstance(x, Mapping) else x
        color = (colors or {}).get(name) or color_for(name, i)
        ax.plot(
            np.asarray(xs),
            np.asarray(y, dtype=float),
            color=color,
            label=name,
            ls=(styles or {}).get(name, "-"),
        )
    if logy:
        ax.set_yscale("log")
    _label(ax, title, xlabel, ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


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
) -> None:
    """Bars grouped by category (outer keys) with one bar per series (inner keys).

    A missing value (None or non-finite) draws no bar but prints a label at its place
    (`missing_labels[category][series]`, else `missing_label`), so "did not reach" or
    "diverged" stays visible instead of looking like zero.
    """
    categories = list(values)
    series: list[str] = []
    for inner in values.values():
        series += [s for s in inner if s not in series]
    width = 0.8 / max(len(series), 1)
    finite = [
        v for inner in values.values() for v in inner.values() if v is not None and math.isfinite(v)
    ]
    base = (min(finite) if logy else 0.0) if finite else 1.0
    for j, name in enumerate(series):
        xs = np.arange(len(categories)) - 0.4 + width * (j + 0.5)
        for k, cat in enumerate(categories):
            v = values[cat].get(name)
            err = None if errors is None else errors.get(cat, {}).get(name)
            if v is None or not math.isfinite(v):
                text = (missing_labels or {}).get(cat, {}).get(name, missing_label)
                ax.text(
                    xs[k],
                    base,
                    text,
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90,
                    color=(colors or {}).get(name) or color_for(name, j),
                )
                continue
            ax.bar(
                xs[k],
                v,
                width,
                color=(colors or {}).get(name) or color_for(name, j),
                label=name if k == _first_present(values, categories, name) else None,
                yerr=None if err is None or not math.isfinite(err) else err,
                capsize=2,
            )
    ax.set_xticks(np.arange(len(categories)), categories)
    if logy:
        ax.set_yscale("log")
        # Plain numbers at 1-2-5 steps read better than 2x10^1 on a bar chart.
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    _label(ax, title, xlabel, ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def _first_present(
    values: Mapping[str, Mapping[str, float | None]], cats: list[str], name: str
) -> int:
    """Index of the first category where `name` has a bar (so its legend entry appears once)."""
    for k, cat in enumerate(cats):
        v = values[cat].get(name)
        if v is not None and math.isfinite(v):
            return k
    return -1


# -- HTML report ----------------------------------------------------------------------------
@dataclass
class Table:
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""


@dataclass
class Section:
    """One part of a report: a heading, paragraphs, images (paths relative to the report's
    folder, or (path, caption) pairs) and tables."""

    heading: str
    text: str | Sequence[str] = ()
    images: Sequence[str | Path | tuple[str | Path, str]] = ()
    tables: Sequence[Table | Mapping[str, Any]] = field(default_factory=list)


def format_cell(value: Any, digits: int = 4) -> str:
    """Numbers with `digits` significant digits; None as an em dash."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return str(value)


def _table_html(table: Table | Mapping[str, Any]) -> str:
    t = table if isinstance(table, Table) else Table(**table)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(format_cell(v))}</td>" for v in row) + "</tr>"
        for row in t.rows
    )
    cap = f"<caption>{html.escape(t.caption)}</caption>" if t.caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image_html(out_dir: Path, image: str | Path | tuple[str | Path, str], embed: bool) -> str:
    path, caption = image if isinstance(image, tuple) else (image, "")
    rel = Path(path)
    if embed:
        data = base64.b64encode((out_dir / rel).read_bytes()).decode("ascii")
        src = f"data:image/png;base64,{data}"
    else:
        src = html.escape(rel.as_posix())
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{src}" alt="{html.escape(rel.name)}">{cap}</figure>'


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; }
img { max-width: 100%; border: 1px solid #ddd; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
"""


def write_html_report(
    out_dir: str | Path,
    title: str,
    sections: Sequence[Section | Mapping[str, Any]],
    *,
    filename: str = "index.html",
    embed_images: bool = False,
    generator: str = "lossreweight",
) -> Path:
    """Write `out_dir/filename`: a title then each section (heading, paragraphs, PNGs, tables).

    Images are referenced relative to `out_dir` (keep the folder together), or inlined as
    base64 with `embed_images=True` for a single self-contained file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<meta name='generator' content='{html.escape(generator)}'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for raw in sections:
        sec = raw if isinstance(raw, Section) else Section(**raw)
        parts.append(f"<h2>{html.escape(sec.heading)}</h2>")
        paragraphs = [sec.text] if isinstance(sec.text, str) else list(sec.text)
        parts += [f"<p>{html.escape(p)}</p>" for p in paragraphs if p]
        parts += [_table_html(t) for t in sec.tables]
        parts += [_image_html(out_dir, im, embed_images) for im in sec.images]
    parts.append("</body></html>")
    path = out_dir / filename
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


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
