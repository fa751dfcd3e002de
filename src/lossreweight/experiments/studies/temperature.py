"""linupper at r in {0.2 ... 1, 100} and annealing r = 100->1, 50->0.5, 200->2 at two budgets.

In the paper's regime (the `replicate` protocol: 5% burn-in, cosine lr to 0.2x): the
sensitivity sweep over constant r at the full budget (2.6 tokens/param), and three annealing
schedules (geometric, from the end of the burn-in to the end of training) at two data budgets
(1.3 and 2.6 tokens/param), each against uniform at the same budget, on the same batches.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lossreweight.experiments import plots as P
from lossreweight.experiments.harness import Context, Plan, Study, best_arm_verdict
from lossreweight.experiments.page import Section, Table
from lossreweight.experiments.runs import Arm
from lossreweight.experiments.scales import BURN_IN_FRACTION, paper_setup
from lossreweight.experiments.stats import Records, fmt_ci

TEMPERATURES: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0, 100.0)
QUICK_TEMPERATURES: tuple[float, ...] = (0.4, 1.0, 100.0)
ANNEALS: tuple[tuple[float, float], ...] = ((100.0, 1.0), (50.0, 0.5), (200.0, 2.0))
BUDGETS: dict[str, float] = {"": 1.0, "@half": 0.5}  # arm-name suffix -> share of 2.6 tokens/param
SEEDS, QUICK_SEEDS = (0, 1, 2), (0, 1)


def r_label(r: float) -> str:
    return f"r={r:g}"


def anneal_label(a: float, b: float) -> str:
    return f"anneal-{a:g}-to-{b:g}"


def anneal_spec(a: float, b: float, steps: int) -> str:
    """Geometric from r = a at the end of the burn-in to r = b at the last step."""
    start = round(BURN_IN_FRACTION * steps)
    return (
        f"{{kind: exponential, r_start: {a:g}, r_end: {b:g}, "
        f"span: {max(1, steps - start)}, start_step: {start}}}"
    )


def arms(quick: bool) -> tuple[tuple[Arm, ...], dict[str, str], dict[str, str], dict[str, Any]]:
    """(arms, batch group of each arm, the uniform arm each is paired with, notes)."""
    out: list[Arm] = []
    groups, pairs, budgets = {}, {}, {}
    for suffix, budget in BUDGETS.items():
        _, run, steps, _ = paper_setup(quick, budget=budget)
        budgets[suffix or "@full"] = {"budget": budget, "steps": steps}
        temps = (QUICK_TEMPERATURES if quick else TEMPERATURES) if not suffix else (0.4,)
        arm_list = [Arm("uniform" + suffix, (*run, "reweight.strategy=uniform"))]
        arm_list += [
            Arm(
                r_label(r) + suffix,
                (*run, "reweight.strategy=linupper", f"reweight.temperature={r:g}"),
            )
            for r in temps
        ]
        arm_list += [
            Arm(
                anneal_label(a, b) + suffix,
                (
                    *run,
                    "reweight.strategy=linupper",
                    f"reweight.temperature={anneal_spec(a, b, steps)}",
                ),
            )
            for a, b in ANNEALS
        ]
        for arm in arm_list:
            groups[arm.name] = suffix or "@full"
            pairs[arm.name] = "uniform" + suffix
        out += arm_list
    return tuple(out), groups, pairs, budgets


def plot_sweep(path: Path, summary: dict[str, Any], temps: tuple[float, ...]) -> Path:
    """Paired val loss - uniform against constant r (log axis), with 95% intervals; the
    annealing schedules at the full budget as horizontal lines."""
    runs = summary["runs"]
    fig, (ax,) = P.new_figure(1, panel_size=(7.0, 4.2))
    ys, lo, hi = [], [], []
    for r in temps:
        d = runs[r_label(r)]["diff_vs_uniform"]["val_loss"]
        ys.append(math.nan if d["mean"] is None else d["mean"])
        ci = d["ci95"]
        lo.append(0.0 if not ci else d["mean"] - ci[0])
        hi.append(0.0 if not ci else ci[1] - d["mean"])
    has_ci = any(v > 0 for v in lo + hi)
    ax.errorbar(
        temps,
        ys,
        yerr=[lo, hi] if has_ci else None,
        color=P.STRATEGY_COLORS["linupper"],
        marker="o",
        capsize=3,
        label="linupper, constant r",
    )
    for i, (a, b) in enumerate(ANNEALS):
        m = runs[anneal_label(a, b)]["diff_vs_uniform"]["val_loss"]["mean"]
        if m is not None:
            ax.axhline(
                m,
                color=P.color_for(anneal_label(a, b), i),
                ls="--",
                lw=1.2,
                label=anneal_label(a, b),
            )
    ax.axhline(0.0, color="black", lw=0.8, label="uniform")
    ax.set_xscale("log")
    ax.set_xlabel("temperature r")
    ax.set_ylabel("val loss - uniform (nats)")
    n = len(summary["seeds"])
    ax.set_title(
        "paired difference to uniform vs r" + (f" (95% interval, {n} seeds)" if n > 1 else "")
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.margins(y=0.15)
    return P.save_figure(fig, path)


def sweep_table(summary: dict[str, Any]) -> Table:
    rows = []
    for arm, r in summary["runs"].items():
        d = r.get("diff_vs_uniform") or {}
        rows.append(
            [
                arm,
                r.get("paired_with", "uniform"),
                r["val_loss"],
                r["val_loss_domain_avg"],
                fmt_ci(d.get("val_loss")) if not arm.startswith("uniform") else "\u2014",
                r["weights"].get("max_weight_x_m"),
                r["weights"].get("ess_fraction"),
            ]
        )
    return Table(
        [
            "arm",
            "paired with",
            "val loss",
            "domain avg",
            "val loss - uniform [95% CI]",
            "mean max(w)xM",
            "ESS / M",
        ],
        rows,
        "constant r, annealing schedules and budgets (nats)",
    )


class Temperature(Study):
    name = "temperature"
    title = "temperature: LinUpper sensitivity to r, and annealing at two budgets"

    def plan(self, quick: bool) -> Plan:
        arm_list, groups, pairs, budgets = arms(quick)
        base, _, _, params = paper_setup(quick)
        return Plan(
            arm_list,
            QUICK_SEEDS if quick else SEEDS,
            base,
            batch_groups=groups,
            paired_to=pairs,
            notes={
                "temperatures": list(QUICK_TEMPERATURES if quick else TEMPERATURES),
                "anneals": [list(a) for a in ANNEALS],
                "budgets": budgets,
                "params": params,
            },
        )

    def plots(self, ctx: Context, records: Records, summary: dict[str, Any]) -> dict[str, str]:
        from lossreweight.experiments.plots import plot_paired_curves

        full = [a for a in records if "@" not in a]
        files = super().plots(
            ctx,
            {a: records[a] for a in full},
            {**summary, "runs": {a: summary["runs"][a] for a in full}},
        )
        temps = tuple(summary["temperatures"])
        files["temperature_sweep"] = plot_sweep(
            ctx.out / "temperature_sweep.png", summary, temps
        ).name
        others = [
            a
            for a in records
            if not a.startswith("uniform") and (a.startswith("anneal") or "@" in a)
        ]
        files["anneal_curves"] = plot_paired_curves(
            ctx.out / "anneal_curves.png",
            records,
            "uniform",
            others,
            pairs={a: summary["runs"][a].get("paired_with", "uniform") for a in others},
        ).name
        return files

    def verdict(self, ctx: Context, summary: dict[str, Any]) -> str:
        full = [a for a in summary["runs"] if "@" not in a]
        return best_arm_verdict(summary, arms=full)

    def sections(
        self, ctx: Context, summary: dict[str, Any], files: dict[str, str]
    ) -> list[Section]:
        budgets = "; ".join(
            f"{k}: {v['budget'] * 2.6:.2g} tokens/param, {v['steps']} steps"
            for k, v in summary["budgets"].items()
        )
        return [
            Section(
                "Sensitivity to r and annealing",
                [
                    f"Budgets: {budgets}. Arms ending in @half train at the half budget "
                    "and are paired with uniform@half. Annealing: geometric from r_start "
                    "after the burn-in to r_end at the last step.",
                    *summary["conclusions"],
                ],
                images=[
                    (files["temperature_sweep"], "val loss - uniform vs constant r (full budget)"),
                    (
                        files["anneal_curves"],
                        "annealing and half-budget arms: val loss - uniform over training",
                    ),
                ],
                tables=[sweep_table(summary)],
            ),
            *super().sections(ctx, summary, files),
        ]


STUDY = Temperature()
