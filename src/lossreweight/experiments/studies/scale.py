"""Model size: does LinUpper's gap to uniform change from 0.5M to 1.4M to 2.2M parameters?

The `replicate` protocol at three model sizes, each trained for 2.6 tokens per parameter (so
the larger models see more data, as in the paper), uniform and LinUpper (r = 0.4) on the same
batches within a size and seed. Every size reads less than one pass over the corpus (a larger
slice of each source than `replicate`'s: 6.1M tokens, all the sources hold; 2.2M parameters
is the largest size that reads them at most once, 2.6M would need 1.10 passes): repetition is
what LinUpper reacts to, so a plan that would repeat data is refused unless
LOSSREWEIGHT_ALLOW_REPEATS=1 asks for it, and the passes are in the setup table. The gap is
LinUpper - uniform in domain-average validation loss per seed, with a 95% interval; its change
with size is the per-seed difference of gaps between the largest and the smallest model (the
paper: larger models gain more).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lossreweight.experiments import plots as P
from lossreweight.experiments.harness import Context, Plan, Study
from lossreweight.experiments.page import Section, Table
from lossreweight.experiments.runs import Arm
from lossreweight.experiments.scales import QUICK_MODEL_SIZES, paper_setup
from lossreweight.experiments.stats import Records, excludes_zero, fmt_ci, regime_text, spread
from lossreweight.metric_names import DOMAIN_AVG_LOSS

SIZES: tuple[str, ...] = ("0.5M", "1.4M", "2.2M")
# Up to 16M characters per source (docs has 0.4M, scripture 4.3M): 6.1M training tokens.
SCALE_DATA: tuple[str, ...] = ("data.max_chars_per_domain=16000000",)
ALLOW_REPEATS_ENV = "LOSSREWEIGHT_ALLOW_REPEATS"
QUICK_SIZES: tuple[str, ...] = tuple(QUICK_MODEL_SIZES)
SEEDS, QUICK_SEEDS = (0, 1, 2), (0, 1)
METRIC = "val_loss_domain_avg"  # the summary's mean of eval/domain_avg_loss


def _gaps(records: Records, size: str) -> dict[int, float | None]:
    """seed -> LinUpper - uniform at `size`, at the seeds where both finished (none: {})."""
    lin, uni = records.get(f"linupper@{size}", {}), records.get(f"uniform@{size}", {})
    out: dict[int, float | None] = {}
    for s in sorted(set(lin) & set(uni)):
        a, b = lin[s].final.get(DOMAIN_AVG_LOSS), uni[s].final.get(DOMAIN_AVG_LOSS)
        out[s] = a - b if a is not None and b is not None else None
    return out


def plot_gaps(path: Path, sizes: dict[str, Any]) -> Path:
    fig, (ax,) = P.new_figure(1, panel_size=(6.5, 4.0))
    xs, ys, lo, hi = [], [], [], []
    for s in sizes.values():
        g = s["gap"]
        if g["mean"] is None:
            continue
        xs.append(s["params"])
        ys.append(g["mean"])
        lo.append(0.0 if not g["ci95"] else g["mean"] - g["ci95"][0])
        hi.append(0.0 if not g["ci95"] else g["ci95"][1] - g["mean"])
    has_ci = any(v > 0 for v in lo + hi)
    ax.errorbar(
        xs,
        ys,
        yerr=[lo, hi] if has_ci else None,
        marker="o",
        capsize=3,
        color=P.STRATEGY_COLORS["linupper"],
        label="linupper - uniform",
    )
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("domain-avg val loss - uniform (nats)")
    ax.set_title("LinUpper's gap to uniform vs model size" + (" (95% interval)" if has_ci else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.margins(x=0.2, y=0.2)
    return P.save_figure(fig, path)


def check_passes(base: tuple[str, ...], sizes: dict[str, Any], *, refuse: bool) -> None:
    """Record each size's passes over the training tokens; refuse more than one unless asked."""
    import os

    from lossreweight.data import prepare_data
    from lossreweight.errors import ConfigError
    from lossreweight.train import load_config

    cfg = load_config("tiny", list(base))
    data = prepare_data(cfg.data, progress=False)
    available = data.num_train_sequences * data.seq_len
    per_step = cfg.train.batch_size * cfg.train.grad_accum * data.seq_len
    for size, s in sizes.items():
        s["train_tokens_available"] = available
        s["passes"] = s["steps"] * per_step / available
        if refuse and s["passes"] > 1.0 and os.environ.get(ALLOW_REPEATS_ENV) != "1":
            raise ConfigError(
                f"scale: the {size} model's {s['steps']} steps read the {available:,} training "
                f"tokens {s['passes']:.2f} times, and repetition is what LinUpper reacts to; "
                f"raise data.max_chars_per_domain, drop the size, or set {ALLOW_REPEATS_ENV}=1 "
                "to study it with repeats"
            )


class Scale(Study):
    name = "scale"
    title = "scale: LinUpper's gap to uniform at three model sizes, same tokens per parameter"
    metric = METRIC
    metric_label = "domain-average validation loss"

    def plan(self, quick: bool) -> Plan:
        arms, groups, pairs, sizes = [], {}, {}, {}
        base = ()
        for size in QUICK_SIZES if quick else SIZES:
            base_s, run, steps, params = paper_setup(quick, size)
            base = base or (
                *(o for o in base_s if not o.startswith("model.")),
                *(() if quick else SCALE_DATA),
            )
            model = tuple(o for o in base_s if o.startswith("model."))
            sizes[size] = {"params": params, "steps": steps}
            for strategy in ("uniform", "linupper"):
                # The largest size trains last: its runs take as long as all the others
                # together, so a study stopped early has every seed of the smaller sizes.
                stage = int(size == (QUICK_SIZES if quick else SIZES)[-1])
                arm = Arm(
                    f"{strategy}@{size}", (*model, *run, f"reweight.strategy={strategy}"), stage
                )
                arms.append(arm)
                groups[arm.name], pairs[arm.name] = size, f"uniform@{size}"
        check_passes(base, sizes, refuse=not quick)
        return Plan(
            tuple(arms),
            QUICK_SEEDS if quick else SEEDS,
            base,
            baseline=arms[0].name,
            batch_groups=groups,
            paired_to=pairs,
            notes={"sizes": sizes},
        )

    def extend(self, ctx: Context, records: Records, summary: dict[str, Any]) -> None:
        gaps = {size: _gaps(records, size) for size in summary["sizes"]}
        for size, g in gaps.items():
            summary["sizes"][size]["gap"] = {**spread(list(g.values())), "seeds": list(g)}
        # From the smallest to the largest size that has finished pairs, at their common seeds.
        ran = [size for size, g in gaps.items() if g]
        first, last = (ran[0], ran[-1]) if len(ran) > 1 else (None, None)
        common = sorted(set(gaps[first]) & set(gaps[last])) if first and last else []
        change = [
            None
            if gaps[last][k] is None or gaps[first][k] is None
            else gaps[last][k] - gaps[first][k]
            for k in common
        ]
        summary["gap_change"] = {**spread(change), "from": first, "to": last, "seeds": common}

    def plots(self, ctx: Context, records: Records, summary: dict[str, Any]) -> dict[str, str]:
        from lossreweight.experiments.plots import plot_loss_curves

        return {
            "gap_vs_size": plot_gaps(ctx.out / "gap_vs_size.png", summary["sizes"]).name,
            "loss_curves": plot_loss_curves(ctx.out / "loss_curves.png", records).name,
        }

    def conclusions(self, ctx: Context, summary: dict[str, Any]) -> list[str]:
        return [
            f"{size} ({s['params']:,} parameters, {s['steps']} steps): "
            + (
                f"linupper - uniform {fmt_ci(s['gap'])} nats over {len(s['gap']['seeds'])} "
                f"seed{'s' * (len(s['gap']['seeds']) != 1)}"
                if s["gap"]["seeds"]
                else "not run yet (no finished pair of runs)"
            )
            for size, s in summary["sizes"].items()
        ]

    def verdict(self, ctx: Context, summary: dict[str, Any]) -> str:
        sizes, ch = summary["sizes"], summary["gap_change"]
        regime = regime_text(summary.get("setup") or [])
        missing = [n for n, s in sizes.items() if not s["gap"]["seeds"]]
        not_run = f" ({', '.join(missing)} not run yet)" if missing else ""
        first, last = ch["from"], ch["to"]
        if first is None:
            ran = [n for n in sizes if n not in missing]
            return (
                f"Fewer than two sizes have finished runs{not_run}, so no trend with size: "
                + (f"at {ran[0]} the gap is {fmt_ci(sizes[ran[0]]['gap'])} nats, " if ran else "")
                + f"{regime}."
            )
        ex = excludes_zero(ch)
        if ch["mean"] is None:
            how = "cannot be compared yet"
        elif ex is None:
            how = "changes by an amount one seed cannot resolve"
        else:
            word = (
                "falls (LinUpper does better with size)"
                if ch["mean"] < 0
                else "rises (LinUpper does worse with size)"
            )
            how = f"{word} by {abs(ch['mean']):.4f} nats, 95% interval {fmt_ci(ch)}, which " + (
                "excludes zero" if ex else "includes zero, so no trend is resolved"
            )
        return (
            f"LinUpper's domain-average gap to uniform is {fmt_ci(sizes[first]['gap'])} nats at "
            f"{first} and {fmt_ci(sizes[last]['gap'])} at {last}: from {first} to {last} it "
            f"{how}{not_run}, {regime}."
        )

    def sections(
        self, ctx: Context, summary: dict[str, Any], files: dict[str, str]
    ) -> list[Section]:
        rows = [
            [
                size,
                s["params"],
                s["steps"],
                f"{s['passes']:.2f}" if s.get("passes") is not None else "\u2014",
                summary["runs"].get(f"uniform@{size}", {}).get(METRIC),
                summary["runs"].get(f"linupper@{size}", {}).get(METRIC),
                fmt_ci(s["gap"]),
            ]
            for size, s in summary["sizes"].items()
        ]
        table = Table(
            [
                "size",
                "parameters",
                "steps",
                "passes over the data",
                "uniform",
                "linupper",
                "linupper - uniform [95% CI]",
            ],
            rows,
            "domain-average validation loss (nats), mean over seeds",
        )
        return [
            Section(
                "Gap vs model size",
                summary["conclusions"],
                images=[
                    (files["gap_vs_size"], "linupper - uniform per size, 95% interval"),
                    (files["loss_curves"], "loss curves of every size"),
                ],
                tables=[table],
            )
        ]


STUDY = Scale()
