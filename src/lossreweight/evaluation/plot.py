"""The PNG beside a curve.json: per-domain validation loss, and downstream scores, by step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lossreweight.evaluation.results import write_new_file
from lossreweight.metric_names import DOMAIN_AVG_LOSS, LOSS, domain_loss_name


def plot_curve(curve: dict[str, Any], directory: Path, stem: str) -> Path | None:
    """Write STEM.png (never over an existing file); None when matplotlib is not installed.
    Losses are plotted in nats as computed, with no clipping of the axis."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend state
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return None
    points = curve["points"]
    steps = [p["step"] for p in points]
    downstream = sorted(
        {
            k
            for p in points
            for k in p["metrics"]
            if k.startswith("downstream/") and not k.endswith("_stderr")
        }
    )
    fig = Figure(figsize=(11 if downstream else 6.5, 4.2), layout="constrained")
    axes = fig.subplots(1, 2 if downstream else 1, squeeze=False)[0]
    ax = axes[0]
    for domain in curve["domains"]:
        _line(ax, points, steps, domain_loss_name(domain), label=domain)
    _line(ax, points, steps, LOSS, label="all tokens", color="black", linewidth=2)
    _line(ax, points, steps, DOMAIN_AVG_LOSS, label="domain average", color="black", linestyle="--")
    ax.set(xlabel="step", ylabel="validation loss (nats/token)", title="per-domain loss")
    for a in axes:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if downstream:
        ax = axes[1]
        for name in downstream:
            ys = [p["metrics"].get(name) for p in points]
            err = [p["metrics"].get(f"{name}_stderr") for p in points]
            err_ok = all(e is not None for e in err)
            ax.errorbar(
                steps,
                ys,
                yerr=err if err_ok else None,
                marker="o",
                capsize=3,
                label=name.removeprefix("downstream/"),
            )
        ax.set(xlabel="step", ylabel="score", title="downstream")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return write_new_file(directory, stem, ".png", lambda p: fig.savefig(p, dpi=110, format="png"))


def _line(ax: Any, points: list[dict[str, Any]], steps: list[int], name: str, **style: Any) -> None:
    ys = [p["metrics"].get(name) for p in points]
    if any(y is not None for y in ys):
        ax.plot(
            steps, [float("nan") if y is None else y for y in ys], marker="o", markersize=3, **style
        )
