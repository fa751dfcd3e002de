"""Result tables of a set of arms: for the HTML report (`Table`) and for the terminal (text)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lossreweight.experiments.plotting import Table
from lossreweight.experiments.summary import fmt_pm


def _diff(run: Mapping[str, Any], baseline: str | None) -> Mapping[str, Any] | None:
    return run.get(f"diff_vs_{baseline}") if baseline else None


def results_table(summary: Mapping[str, Any], *, caption: str = "") -> Table:
    """One row per arm: final val loss, domain average and per-domain loss (mean ± std over
    seeds), and with a baseline the paired difference, seeds better, and steps to reach the
    baseline's final loss."""
    base = summary.get("baseline")
    domains = list(summary["domains"])
    cols = ["arm", "seeds", "val_loss", "domain avg", *domains]
    if base:
        cols += [f"val_loss - {base}", "seeds better", f"steps to {base}'s final", "speed-up"]
    rows = []
    for arm, r in summary["runs"].items():
        sd = r["std"]
        row: list[Any] = [
            arm,
            len(r["seeds"]),
            fmt_pm(r["val_loss"], sd["val_loss"]),
            fmt_pm(r["val_loss_domain_avg"], sd["val_loss_domain_avg"]),
        ]
        row += [
            fmt_pm(r["val_loss_by_domain"].get(d), sd["val_loss_by_domain"].get(d), 3)
            for d in domains
        ]
        diff = _diff(r, base)
        if base:
            if diff is None:
                row += ["\u2014"] * 4
            else:
                st = diff["steps_to_baseline_final"]
                reached = (
                    f" ({st['reached']}/{len(r['seeds'])} reached)"
                    if st["reached"] < len(r["seeds"])
                    else ""
                )
                steps = (
                    fmt_pm(st["mean"], st["std"], 0) if st["mean"] is not None else "not reached"
                )
                row += [
                    fmt_pm(diff["val_loss"]["mean"], diff["val_loss"]["std"]),
                    f"{diff['seeds_better']}/{len(r['seeds'])}",
                    steps + reached,
                    fmt_pm(diff["speedup"]["mean"], diff["speedup"]["std"], 2),
                ]
        rows.append(row)
    return Table(cols, rows, caption or "final validation loss (mean \u00b1 std over seeds)")


def weights_table(summary: Mapping[str, Any]) -> Table:
    """Weight diagnostics averaged over training, per arm."""
    cols = ["arm", "mean max(w)xM", "peak max(w)xM", "ESS / M", "corr(w, loss)", "frac w > 2/M"]
    rows = []
    for arm, r in summary["runs"].items():
        w = r["weights"]
        rows.append(
            [
                arm,
                w.get("max_weight_x_m"),
                w.get("max_weight_x_m_max"),
                w.get("ess_fraction"),
                w.get("weight_loss_corr"),
                w.get("frac_above_2_over_m"),
            ]
        )
    return Table(cols, rows, "weight diagnostics, averaged over logged steps and seeds")


def text_table(table: Table) -> str:
    """An aligned plain-text rendering of a `Table` for the terminal."""
    from lossreweight.experiments.plotting import format_cell

    cells = [[str(c) for c in table.columns]] + [
        [format_cell(v) for v in row] for row in table.rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    return "\n".join(lines)


def short_table(summary: Mapping[str, Any]) -> str:
    """The terminal summary: arm, val_loss, per-domain loss, and the difference to the baseline."""
    base = summary.get("baseline")
    domains = list(summary["domains"])
    cols = ["strategy", "val_loss", *domains]
    if base:
        cols.append(f"vs {base}")
    rows = []
    for arm, r in summary["runs"].items():
        row: list[Any] = [arm, fmt_pm(r["val_loss"], r["std"]["val_loss"])]
        row += [
            f"{r['val_loss_by_domain'][d]:.3f}"
            if r["val_loss_by_domain"].get(d) is not None
            else "\u2014"
            for d in domains
        ]
        if base:
            diff = _diff(r, base)
            m = None if diff is None or arm == base else diff["val_loss"]["mean"]
            row.append("\u2014" if m is None else f"{m:+.4f}")
        rows.append(row)
    return text_table(Table(cols, rows))
