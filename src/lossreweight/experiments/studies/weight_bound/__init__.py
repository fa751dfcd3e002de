"""is max(w) <= 2/M? synthetic batches and training, with and without the cap.

Two parts. (1) Synthetic batches: the library's `Reweighter` on controlled loss
distributions (symmetric, right-skewed with one high outlier, bimodal with a minority of hard
samples, left-skewed with one low outlier) for several batch sizes M and temperatures r,
with and without the optional cap `max_weight = 2`. (2) Training: max(w) x M at every step
of LinUpper runs at r = 0.4 and 0.2, with and without the cap.

Why the bound holds when it does: LinUpper gives every sample in the upper half of the
batch's loss range (x >= 0) the same top score, so max(w) <= 1 / n_top with n_top the number
of such samples; max(w) x M <= 2 whenever at least half the batch is in the upper half of the
range. A batch whose range is stretched by one high outlier has n_top = 1: then max(w) x M
tends to e^((1 - s)/r) as M grows, s being the score of the rest of the batch, so up to
e^(1/r) (12.2 at r = 0.4) when the rest sits at the bottom of the range.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from lossreweight.experiments import plots as P
from lossreweight.experiments.harness import Context, Plan, Study
from lossreweight.experiments.page import Section, Table
from lossreweight.experiments.plots import smooth
from lossreweight.experiments.runs import Arm
from lossreweight.experiments.scales import full_scale, quick_scale
from lossreweight.experiments.stats import Records, paired, regime_text, series
from lossreweight.experiments.studies.weight_bound.synthetic import (
    BOUND,
    CAP,
    plot_examples,
    plot_synthetic,
    synthetic_sweep,
)
from lossreweight.metric_names import reweight_name

MAX_W, FRAC_ABOVE = reweight_name("max_weight_x_m"), reweight_name("frac_above_2_over_m")


def plot_training(path: Path, records: Records, colors: dict[str, str]) -> Path:
    fig, (ax,) = P.new_figure(1, panel_size=(9.0, 4.0))
    for arm, by_seed in records.items():
        for run in by_seed.values():
            steps, v = series(run, MAX_W)
            ax.plot(steps, v, color=colors[arm], lw=0.6, alpha=0.35)
            ax.plot(
                steps,
                smooth(torch.tensor(v).numpy()[None], 10)[0],
                color=colors[arm],
                lw=1.8,
                label=arm,
            )
    ax.axhline(BOUND, color="black", ls=":", lw=1, label="2 (the paper's bound)")
    ax.set_xlabel("step")
    ax.set_ylabel("max(w) x M")
    ax.set_title("max(w) x M at every step (thin) and its 10-step average (thick)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return P.save_figure(fig, path)


def training_bound(records: Records) -> dict[str, Any]:
    """Per arm: how often and how far max(w) x M exceeded 2 over the logged steps."""
    out = {}
    for arm, by_seed in records.items():
        vals = [v for run in by_seed.values() for v in series(run, MAX_W)[1]]
        frac = [v for run in by_seed.values() for v in series(run, FRAC_ABOVE)[1]]
        out[arm] = {
            "steps_logged": len(vals),
            "max_weight_x_m_mean": sum(vals) / len(vals) if vals else None,
            "max_weight_x_m_max": max(vals) if vals else None,
            "frac_steps_above_bound": sum(v > BOUND + 1e-4 for v in vals) / len(vals)
            if vals
            else None,
            "mean_frac_samples_above_2_over_m": sum(frac) / len(frac) if frac else None,
        }
    return out


def scale(quick: bool):  # noqa: ANN201 - a Scale
    # Logged at every step (FULL_BASE), so the bound is checked at every step.
    return quick_scale(seeds=(0,), steps=8) if quick else full_scale(100, 20, (0,))


ARMS: tuple[Arm, ...] = (
    Arm.strategy("uniform"),
    Arm("linupper", ("reweight.strategy=linupper", "reweight.temperature=0.4")),
    Arm(
        "linupper-cap2",
        ("reweight.strategy=linupper", "reweight.temperature=0.4", f"reweight.max_weight={CAP}"),
    ),
    Arm("linupper-r0.2", ("reweight.strategy=linupper", "reweight.temperature=0.2")),
    Arm(
        "linupper-r0.2-cap2",
        ("reweight.strategy=linupper", "reweight.temperature=0.2", f"reweight.max_weight={CAP}"),
    ),
)


class WeightBound(Study):
    name = "weight-bound"
    title = "weight-bound: is max(w) <= 2/M?"

    def plan(self, quick: bool) -> Plan:
        sc = scale(quick)
        return Plan(ARMS, sc.seeds, sc.overrides)

    def extend(self, ctx: Context, records: Records, summary: dict[str, Any]) -> None:
        start = time.perf_counter()
        sizes = [8, 64, 256] if ctx.quick else [4, 8, 16, 32, 64, 128, 256, 1024]
        syn = synthetic_sweep(sizes, [0.2, 0.4, 1.0], draws=10 if ctx.quick else 100)
        seeds = ctx.plan.seeds
        domains = summary["domains"]
        cap_effect = {
            f"{cap}-vs-{nocap}": paired(
                [records[cap][s] for s in seeds], [records[nocap][s] for s in seeds], domains
            )
            for cap, nocap in (
                ("linupper-cap2", "linupper"),
                ("linupper-r0.2-cap2", "linupper-r0.2"),
            )
        }
        summary.update(
            {
                "bound": BOUND,
                "cap": CAP,
                "synthetic": syn,
                "synthetic_sizes": sizes,
                "synthetic_seconds": round(time.perf_counter() - start, 2),
                "training_bound": training_bound(records),
                "cap_effect": cap_effect,
            }
        )

    def plots(self, ctx: Context, records: Records, summary: dict[str, Any]) -> dict[str, str]:
        files = super().plots(ctx, records, summary)
        colors = P.colors_for(list(records))
        files["synthetic_max_weight"] = plot_synthetic(
            ctx.out / "synthetic_max_weight.png", summary["synthetic"]
        ).name
        files["synthetic_examples"] = plot_examples(ctx.out / "synthetic_examples.png").name
        files["training_max_weight"] = plot_training(
            ctx.out / "training_max_weight.png", records, colors
        ).name
        return files

    def conclusions(self, ctx: Context, summary: dict[str, Any]) -> list[str]:
        return _conclusions(summary["synthetic"], summary["training_bound"], summary["cap_effect"])

    def verdict(self, ctx: Context, summary: dict[str, Any]) -> str:
        tb = summary["training_bound"]
        lin = tb.get("linupper", {})
        syn = summary["synthetic"]
        worst = max(
            row["max_weight_x_m_max"]
            for by_r in syn["results"].values()
            for rows in by_r.values()
            for row in rows.values()
        )
        peak = lin.get("max_weight_x_m_max")
        frac = lin.get("frac_steps_above_bound")
        train = (
            ""
            if peak is None
            else f"; in training, linupper (r = 0.4) peaked at max(w) x M = {peak:.2f} and was "
            f"above 2 on {frac:.0%} of steps, {regime_text(summary.get('setup') or [])}"
        )
        return (
            "The 2/M bound does not hold in general: "
            "on synthetic batches with one high-loss outlier "
            f"max(w) x M reached {worst:.1f} (the cap max_weight = 2 holds it on every batch: "
            f"{syn['cap_holds']}){train}."
        )

    def sections(
        self, ctx: Context, summary: dict[str, Any], files: dict[str, str]
    ) -> list[Section]:
        syn, sizes, conclusions = (
            summary["synthetic"],
            summary["synthetic_sizes"],
            summary["conclusions"],
        )
        syn_rows = []
        for dist, by_r in syn["results"].items():
            for r, rows in by_r.items():
                syn_rows.append(
                    [
                        dist,
                        r,
                        *[
                            f"{rows[str(m)]['max_weight_x_m_mean']:.2f} "
                            f"({rows[str(m)]['frac_batches_above_bound']:.0%})"
                            for m in sizes
                        ],
                    ]
                )
        train_rows = [
            [
                a,
                v["max_weight_x_m_mean"],
                v["max_weight_x_m_max"],
                v["frac_steps_above_bound"],
                summary["runs"][a]["val_loss"],
                summary["runs"][a]["weights"].get("ess_fraction"),
            ]
            for a, v in summary["training_bound"].items()
        ]
        return [
            Section(
                "Synthetic batches",
                [
                    *conclusions[:2],
                    f"Each cell: mean max(w) x M over {syn['draws']} random batches "
                    "(in brackets: the share of batches above 2). LinUpper, delta = 1, no cap.",
                ],
                images=[
                    (
                        files["synthetic_max_weight"],
                        "max(w) x M vs M (mean, min-max band over batches)",
                    ),
                    (files["synthetic_examples"], "w x M against the loss, one batch of each kind"),
                ],
                tables=[
                    Table(
                        ["distribution", "r", *[f"M={m}" for m in sizes]],
                        syn_rows,
                        "max(w) x M without the cap",
                    )
                ],
            ),
            Section(
                "During training",
                conclusions[2:],
                images=[(files["training_max_weight"], "max(w) x M over training")],
                tables=[
                    Table(
                        [
                            "arm",
                            "mean max(w)xM",
                            "peak max(w)xM",
                            "share of steps above 2",
                            "val_loss",
                            "ESS / M",
                        ],
                        train_rows,
                        "max(w) x M over the logged steps",
                    )
                ],
            ),
            *super().sections(ctx, summary, files),
        ]


def _conclusions(
    syn: dict[str, Any], train_b: dict[str, Any], cap_effect: dict[str, Any]
) -> list[str]:
    res = syn["results"]

    def worst(dist: str) -> float:
        return max(
            row["max_weight_x_m_max"] for rows in res[dist].values() for row in rows.values()
        )

    holds = [d for d in res if worst(d) <= BOUND + 1e-4]
    fails = [d for d in res if d not in holds]
    out = [
        "Synthetic: max(w) x M <= 2 on every batch for "
        f"{', '.join(holds) or 'no distribution'}; it fails for "
        f"{', '.join(fails) or 'none'} "
        f"(worst {max((worst(d) for d in fails), default=float('nan')):.1f}). "
        "Every batch satisfied max(w) x M <= M / n_top "
        "(n_top: samples in the upper half of the loss range): "
        f"{syn['explained_by_top_half']}. With one high outlier, max(w) x M can grow up to e^(1/r) "
        "(when the rest of the batch sits at the bottom of the range): "
        + ", ".join(f"r={r}: {v:.1f}" for r, v in syn["limit_one_outlier"].items())
        + ".",
        f"The cap max_weight = {CAP:g} keeps max(w) x M <= {CAP:g} on every batch: "
        f"{syn['cap_holds']}.",
    ]
    for arm, v in train_b.items():
        if v["max_weight_x_m_max"] is None or arm == "uniform":
            continue
        out.append(
            f"Training, {arm}: max(w) x M averaged {v['max_weight_x_m_mean']:.2f}, peaked at "
            f"{v['max_weight_x_m_max']:.2f}, and was above 2 on "
            f"{v['frac_steps_above_bound']:.0%} of steps."
        )
    for name, d in cap_effect.items():
        m = d["val_loss"]["mean"]
        if m is not None:
            out.append(f"{name}: val_loss difference {m:+.4f} (negative: the cap helped).")
    return out


STUDY = WeightBound()
