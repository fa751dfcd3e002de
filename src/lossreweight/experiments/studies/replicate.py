"""The paper's GPT-2 protocol scaled by its ratios: 2.6 tokens/param, 5% burn-in, 3 seeds.

uniform, LinUpper, Quadratic and Extremes at r = 0.4 and r = 1.0 on the natural-text domains
of the embedded corpus (the synthetic `math` domain is left out of training and evaluation),
AdamW with lr warm-up over 2.5% of the steps and cosine decay to 0.2x, weight decay 0.01, grad
clip 1.0, reweighting only after a uniform burn-in of 5% of the steps. Every arm sees the same
batches from the same init within a seed (checked: the study stops otherwise). Reported per
arm: validation loss, its domain average, the worst domain, each domain, the paired
difference to uniform per seed with a 95% t-interval across seeds, and the steps each arm
takes to reach uniform's final validation loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lossreweight.errors import DataError
from lossreweight.experiments.harness import Context, Plan, Study, best_arm_verdict
from lossreweight.experiments.page import Section, Table
from lossreweight.experiments.runs import Arm
from lossreweight.experiments.scales import (
    BURN_IN_FRACTION,
    LR_WARMUP_FRACTION,
    NATURAL_DOMAINS,
    TOKENS_PER_PARAM,
    paper_scale,
)
from lossreweight.experiments.stats import Records, fmt_ci

STRATEGIES: tuple[str, ...] = ("linupper", "quadratic", "extremes")
TEMPERATURES: tuple[float, ...] = (0.4, 1.0)
SEEDS: tuple[int, ...] = (0, 1, 2)
METRICS = {  # label -> keys of the value in an arm's diff_vs_uniform
    "val loss": ("val_loss",),
    "domain avg": ("val_loss_domain_avg",),
    "worst domain": ("worst_domain_loss",),
}


def arm_name(strategy: str, r: float) -> str:
    return f"{strategy}-r{r:g}"


def arms() -> tuple[Arm, ...]:
    out = [Arm.strategy("uniform")]
    # r = 0.4 (the paper's default) at every seed first, then r = 1.0: a stopped run has the
    # main comparison whole.
    out += [
        Arm(arm_name(s, r), (f"reweight.strategy={s}", f"reweight.temperature={r:g}"), stage=i)
        for i, r in enumerate(TEMPERATURES)
        for s in STRATEGIES
    ]
    return tuple(out)


def check_same_batches(summary: dict[str, Any]) -> None:
    """Within a seed every arm must have been fed the same batches (the paired design)."""
    bad = [s for s, ok in summary["same_batches_per_seed"].items() if not ok]
    if bad:
        raise DataError(
            f"the arms of seed(s) {', '.join(bad)} were fed different batches (did the corpus "
            "change between runs?); start over in a new --out folder"
        )


def protocol_block(summary: dict[str, Any], params: int, steps: int) -> dict[str, Any]:
    tokens = {r["tokens"] for r in summary["setup"] if r.get("tokens")}
    measured = [r["tokens_per_param"] for r in summary["setup"] if r.get("tokens_per_param")]
    return {
        "tokens_per_param": max(measured) if measured else None,
        "tokens_per_param_target": TOKENS_PER_PARAM,
        "burn_in_fraction": BURN_IN_FRACTION,
        "lr_warmup_fraction": LR_WARMUP_FRACTION,
        "temperature": list(TEMPERATURES),
        "steps": steps,
        "params": params,
        "tokens": max(tokens) if tokens else None,
        "seeds": summary["seeds"],
        "domains": list(NATURAL_DOMAINS),
        "synthetic_domain": "math excluded from training and validation",
        "optimizer": (
            "AdamW (beta 0.9, 0.95), lr warm-up 2.5%, cosine to 0.2x, weight decay 0.01, clip 1.0"
        ),
    }


def _paired(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each arm's paired differences to uniform (uniform itself left out)."""
    return {
        arm: r["diff_vs_uniform"]
        for arm, r in summary["runs"].items()
        if arm != "uniform" and "diff_vs_uniform" in r
    }


def paired_table(summary: dict[str, Any]) -> Table:
    rows = []
    for arm, p in _paired(summary).items():
        st = p["steps_to_baseline_final"]
        reach = (
            f"{st['mean']:.0f}" if st["mean"] is not None else "\u2014"
        ) + f" ({st['reached']}/{st['of']})"
        rows.append(
            [
                arm,
                fmt_ci(p["val_loss"]),
                fmt_ci(p["val_loss_domain_avg"]),
                fmt_ci(p["worst_domain_loss"]),
                f"{p['seeds_better']}/{len(p['val_loss']['per_seed'])}",
                reach,
            ]
        )
    return Table(
        [
            "arm",
            "val loss - uniform [95% CI]",
            "domain avg",
            "worst domain",
            "seeds better",
            "steps to uniform's final (seeds reached)",
        ],
        rows,
        "paired differences to uniform in nats, mean over seeds and 95% t-interval "
        "(negative: better)",
    )


def domain_table(summary: dict[str, Any]) -> Table:
    doms = summary["protocol"]["domains"]
    paired = _paired(summary)
    rows = []
    for arm, a in summary["runs"].items():
        p = paired.get(arm)
        row: list[Any] = [arm, a["val_loss"], a["val_loss_domain_avg"], a["worst_domain_loss"]]
        row += [a["val_loss_by_domain"].get(d) for d in doms]
        row += [fmt_ci(p["val_loss_by_domain"][d], 3) if p else "\u2014" for d in doms]
        rows.append(row)
    return Table(
        ["arm", "val loss", "domain avg", "worst domain", *doms, *[f"{d} - uniform" for d in doms]],
        rows,
        "final validation loss per domain (nats, mean over seeds) and paired difference to uniform",
    )


class Replicate(Study):
    name = "replicate"
    title = "replicate: the paper's GPT-2 protocol, scaled down by its ratios"
    metric = "val_loss_domain_avg"
    metric_label = "domain-average validation loss"

    def plan(self, quick: bool) -> Plan:
        sc, params = paper_scale(quick, seeds=SEEDS)
        return Plan(arms(), sc.seeds, sc.overrides, notes={"params": params})

    def extend(self, ctx: Context, records: Records, summary: dict[str, Any]) -> None:
        check_same_batches(summary)
        summary["protocol"] = protocol_block(summary, summary.pop("params"), summary["steps"])

    def plots(self, ctx: Context, records: Records, summary: dict[str, Any]) -> dict[str, str]:
        from lossreweight.experiments.plots import plot_paired_curves

        files = super().plots(ctx, records, summary)
        others = list(_paired(summary))
        metrics = {
            **METRICS,
            **{d: ("val_loss_by_domain", d) for d in summary["protocol"]["domains"]},
        }
        files["paired_differences"] = plot_paired_bars(
            ctx.out / "paired_differences.png", summary, others, metrics
        ).name
        files["paired_curves"] = plot_paired_curves(
            ctx.out / "paired_curves.png", records, "uniform", others
        ).name
        return files

    def conclusions(self, ctx: Context, summary: dict[str, Any]) -> list[str]:
        out = []
        for arm, p in _paired(summary).items():
            st = p["steps_to_baseline_final"]
            out.append(
                f"{arm} - uniform: val loss {fmt_ci(p['val_loss'])}, "
                f"domain avg {fmt_ci(p['val_loss_domain_avg'])}, "
                f"worst domain {fmt_ci(p['worst_domain_loss'])} nats; lower val loss on "
                f"{p['seeds_better']}/{len(p['val_loss']['per_seed'])} seeds; "
                "reaches uniform's final val loss on "
                f"{st['reached']}/{st['of']} seeds"
                + (
                    f" (step {st['mean']:.0f} on average of {summary['steps']})"
                    if st["mean"] is not None
                    else ""
                )
                + "."
            )
        return out

    def verdict(self, ctx: Context, summary: dict[str, Any]) -> str:
        return best_arm_verdict(summary, self.metric, self.metric_label)

    def sections(
        self, ctx: Context, summary: dict[str, Any], files: dict[str, str]
    ) -> list[Section]:
        head = Section(
            "Paired differences to uniform",
            summary["conclusions"],
            images=[
                (files["paired_differences"], "arm - uniform per metric: mean and 95% interval"),
                (files["paired_curves"], "val loss - uniform at every evaluation"),
            ],
            tables=[paired_table(summary), domain_table(summary)],
        )
        return [head, *super().sections(ctx, summary, files)]


STUDY = Replicate()


def plot_paired_bars(
    path: Path,
    summary: Mapping[str, Any],
    arms: Sequence[str],
    metrics: Mapping[str, Sequence[str]],
    *,
    colors: Mapping[str, str] | None = None,
    title: str = "",
) -> Path:
    """Grouped bars: for each metric (label -> path of keys below the arm's
    `diff_vs_<baseline>`), each arm's mean paired difference with its 95% interval."""
    import numpy as np

    from lossreweight.experiments.plots import MAX_WIDTH, colors_for, new_figure, save_figure

    base = summary["baseline"]
    colors = colors or colors_for(list(arms))
    fig, (ax,) = new_figure(1, panel_size=(MAX_WIDTH, 4.0))
    width = 0.8 / max(1, len(arms))
    xs = np.arange(len(metrics))
    for i, arm in enumerate(arms):
        means, lo, hi = [], [], []
        for keys in metrics.values():
            d = summary["runs"][arm][f"diff_vs_{base}"]
            for k in keys:
                d = d[k]
            m, ci = d.get("mean"), d.get("ci95")
            means.append(np.nan if m is None else m)
            lo.append(0.0 if not ci or m is None else m - ci[0])
            hi.append(0.0 if not ci or m is None else ci[1] - m)
        ax.bar(
            xs + (i - (len(arms) - 1) / 2) * width,
            means,
            width,
            color=colors.get(arm),
            label=arm,
            yerr=np.array([lo, hi]) if any(v > 0 for v in lo + hi) else None,
            capsize=2,
            ecolor="black",
        )
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xticks(xs)
    ax.set_xticklabels(list(metrics), rotation=20, ha="right")
    ax.set_ylabel(f"arm - {base} (nats; below 0: better)")
    n = len(summary.get("seeds", []))
    ax.set_title(
        title
        or (
            f"paired difference to {base}, mean and 95% interval over {n} seeds"
            if n > 1
            else f"difference to {base} (one seed: no interval)"
        )
    )
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=max(1, len(arms) // 4))
    ax.margins(y=0.15)  # error bars and labels stay inside the axes
    return save_figure(fig, path)
