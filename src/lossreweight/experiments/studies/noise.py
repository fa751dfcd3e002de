"""Noisy and redundant data: does LinUpper up-weight random-token noise and down-weight repeats?

The `replicate` protocol (2.6 tokens/param, 5% burn-in) on four training mixes: clean; 10% and
20% of the training sequences random tokens; 20% exact repeats of a few real sequences. The
corrupted sequences are their own labelled domain (`noise_data`), so per arm the study reports
`corrupted_sample_share` (their share of the samples), `corrupted_weight_share` (their share
of the batch weight after the burn-in) and `clean_val_loss` (the mean validation loss over the
five clean domains), each paired with uniform on the same mix, with 95% intervals over seeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lossreweight.experiments.harness import Context, Plan, Study
from lossreweight.experiments.noise_data import (
    NOISE_DOMAIN,
    REPEAT_DOMAIN,
    clean_tokenizer,
    mixture_value,
    natural_counts,
    noise_file,
    repeat_file,
    word_tokens,
)
from lossreweight.experiments.page import Section, Table
from lossreweight.experiments.runs import Arm, RunRecord
from lossreweight.experiments.scales import BURN_IN_FRACTION, NATURAL_DOMAINS, paper_setup
from lossreweight.experiments.stats import (
    Records,
    excludes_zero,
    fmt_ci,
    mean,
    mean_domain_loss,
    measured_burn_in,
    regime_text,
    share_after,
    spread,
)
from lossreweight.metric_names import LOSS

STRATEGIES: tuple[str, ...] = ("uniform", "linupper", "quadratic")
# condition -> (corrupted domain, share of the training sequences); "" is the clean mix.
CONDITIONS: dict[str, tuple[str | None, float]] = {
    "": (None, 0.0),
    "@noise10": (NOISE_DOMAIN, 0.1),
    "@noise20": (NOISE_DOMAIN, 0.2),
    "@repeat20": (REPEAT_DOMAIN, 0.2),
}
SEEDS, QUICK_SEEDS = (0, 1, 2), (0, 1)


def condition_overrides(base: tuple[str, ...], steps: int) -> dict[str, tuple[str, ...]]:
    """Each condition's data overrides: the clean tokenizer for all, plus the corrupted source
    and the mixture that gives it its share."""
    from lossreweight.train import load_config

    cfg = load_config("tiny", list(base))
    tok = clean_tokenizer(base)
    counts = natural_counts(base)
    common = ("data.tokenizer.kind=hf", f"data.tokenizer.path={tok}")
    out = {}
    for cond, (domain, share) in CONDITIONS.items():
        if domain is None:
            out[cond] = common
            continue
        needed = int(share * steps * cfg.train.batch_size / (1 - cfg.data.val_fraction)) + 64
        path = (
            noise_file(base, tok, needed, cfg.data.seq_len)
            if domain == NOISE_DOMAIN
            else repeat_file(base)
        )
        out[cond] = (
            *common,
            f"data.sources=[embedded,{path}]",
            "data.domains=[" + ",".join((*NATURAL_DOMAINS, domain)) + "]",
            f"data.mixture={mixture_value(counts, domain, share)}",
        )
    return out


def _post_burn_in_share(run: RunRecord, key: str, domain: str, steps: int) -> float | None:
    # after the burn-in the run measured (final.json), else the protocol's 5% (older runs)
    end = measured_burn_in(run.final).get("end_step")
    return share_after(run, key, domain, BURN_IN_FRACTION * steps if end is None else end)


def clean_val_loss(run: RunRecord) -> float | None:
    return mean_domain_loss(run, NATURAL_DOMAINS)


def arms_block(records: Records, steps: int) -> dict[str, Any]:
    out = {}
    for arm, by_seed in records.items():
        cond = arm[arm.index("@") :] if "@" in arm else ""
        domain, share = CONDITIONS[cond]
        runs = [by_seed[s] for s in sorted(by_seed)]
        base = [records["uniform" + cond][s] for s in sorted(by_seed)]
        clean = [clean_val_loss(r) for r in runs]
        sample = [
            _post_burn_in_share(r, "domain_sample_share", domain, steps) if domain else 0.0
            for r in runs
        ]
        weight = [
            _post_burn_in_share(r, "domain_weight_share", domain, steps) if domain else 0.0
            for r in runs
        ]
        diffs = [
            a - b if a is not None and b is not None else None
            for a, b in zip(clean, [clean_val_loss(r) for r in base], strict=True)
        ]
        out[arm] = {
            "condition": cond.lstrip("@") or "clean",
            "corrupted_domain": domain,
            "corrupted_fraction": share,
            "seeds": [r.seed for r in runs],
            "corrupted_sample_share": mean(sample),
            "corrupted_weight_share": mean(weight),
            "corrupted_weight_share_per_seed": weight,
            "clean_val_loss": mean(clean),
            "clean_val_loss_per_seed": clean,
            "val_loss": mean([r.final.get(LOSS) for r in runs]),
            "diff_vs_uniform": spread(diffs),  # clean_val_loss - uniform on the same mix
        }
    return out


class Noise(Study):
    name = "noise"
    title = "noise: random-token and repeated sequences in the training mix"

    def plan(self, quick: bool) -> Plan:
        base, run, steps, params = paper_setup(quick)
        conds = condition_overrides(base, steps)
        arms, groups, pairs = [], {}, {}
        for cond, data in conds.items():
            for s in STRATEGIES:
                # uniform and linupper on every mix first: a stopped study has the main question
                arm = Arm(
                    s + cond, (*data, *run, f"reweight.strategy={s}"), stage=int(s == "quadratic")
                )
                arms.append(arm)
                groups[arm.name], pairs[arm.name] = cond, "uniform" + cond
        return Plan(
            tuple(arms),
            QUICK_SEEDS if quick else SEEDS,
            base,
            batch_groups=groups,
            paired_to=pairs,
            notes={
                "params": params,
                "conditions": {c.lstrip("@") or "clean": list(v) for c, v in CONDITIONS.items()},
                "noise_vocabulary": len(word_tokens(clean_tokenizer(base))),
            },
        )

    def extend(self, ctx: Context, records: Records, summary: dict[str, Any]) -> None:
        summary["arms"] = arms_block(records, summary["steps"])

    def plots(self, ctx: Context, records: Records, summary: dict[str, Any]) -> dict[str, str]:
        from lossreweight.experiments.plots import plot_loss_curves

        clean = {a: records[a] for a in records if "@" not in a}
        return {
            "loss_curves": plot_loss_curves(ctx.out / "loss_curves.png", clean).name,
            "corrupted_shares": plot_share_bars(
                ctx.out / "corrupted_shares.png", summary["arms"]
            ).name,
        }

    def conclusions(self, ctx: Context, summary: dict[str, Any]) -> list[str]:
        out = []
        for arm, a in summary["arms"].items():
            if arm.startswith("uniform"):
                continue
            share = (
                ""
                if not a["corrupted_domain"]
                else f"corrupted sequences get {a['corrupted_weight_share']:.1%} "
                "of the batch weight at "
                f"{a['corrupted_sample_share']:.1%} of the samples; "
            )
            out.append(
                f"{arm}: {share}clean val loss - uniform {fmt_ci(a['diff_vs_uniform'])} nats."
            )
        return out

    def verdict(self, ctx: Context, summary: dict[str, Any]) -> str:
        arms = summary["arms"]
        n, r = arms.get("linupper@noise20"), arms.get("linupper@repeat20")
        if not n or not r:
            return "The 20% noise and repeat arms of linupper are not finished yet."
        d = n["diff_vs_uniform"]
        ex = excludes_zero(d)
        sure = (
            "no interval"
            if ex is None
            else ("the interval excludes zero" if ex else "the interval includes zero")
        )
        return (
            "With 20% random-token sequences, LinUpper gives them "
            f"{n['corrupted_weight_share']:.0%} of the batch "
            f"weight (they are {n['corrupted_sample_share']:.0%} of the samples) "
            "and its clean validation loss "
            f"differs from uniform by {fmt_ci(d)} nats ({sure}); 20% exact repeats get "
            f"{r['corrupted_weight_share']:.0%} of its weight, "
            f"{regime_text(summary.get('setup') or [])}."
        )

    def sections(
        self, ctx: Context, summary: dict[str, Any], files: dict[str, str]
    ) -> list[Section]:
        rows = [
            [
                arm,
                a["condition"],
                a["corrupted_sample_share"],
                a["corrupted_weight_share"],
                a["clean_val_loss"],
                fmt_ci(a["diff_vs_uniform"]) if not arm.startswith("uniform") else "\u2014",
            ]
            for arm, a in summary["arms"].items()
        ]
        table = Table(
            [
                "arm",
                "mix",
                "corrupted sample share",
                "corrupted weight share",
                "clean val loss",
                "clean val loss - uniform [95% CI]",
            ],
            rows,
            "shares averaged over the steps after the burn-in; clean val loss: mean over the five "
            "natural-text domains (nats)",
        )
        return [
            Section(
                "Corrupted sequences: weight and clean loss",
                summary["conclusions"],
                images=[
                    (
                        files["corrupted_shares"],
                        "weight share vs sample share of corrupted sequences",
                    ),
                    (files["loss_curves"], "loss curves on the clean mix"),
                ],
                tables=[table],
            )
        ]


def plot_share_bars(path: Path, arms: Mapping[str, Mapping[str, Any]]) -> Path:
    """Per corrupted mix, each arm's weight share of the corrupted sequences next to their
    sample share (the dashed line): above it, the arm up-weights them."""
    from lossreweight.experiments.plots import colors_for, new_figure, save_figure

    conds = [c for c in dict.fromkeys(a["condition"] for a in arms.values()) if c != "clean"]
    strategies = list(dict.fromkeys(name.split("@")[0] for name in arms))
    colors = colors_for(strategies)
    fig, (ax,) = new_figure(1, panel_size=(max(6.0, 2.2 * len(conds)), 4.0))
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
    return save_figure(fig, path)


STUDY = Noise()
