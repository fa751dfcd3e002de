"""uniform vs a static domain mixture, each with and without linupper (100-step regime).

Four arms: the uniform domain mixture (1/6 per domain, the paper's setting) and a static
non-uniform mixture, each with uniform sample weights and with LinUpper. The static mixture
is fixed in advance, DoGE/DoReMi-style (those methods learn such weights; here they are set
by hand from one observation): in a uniform-mixture run of the tiny preset, math (synthetic
arithmetic) is by far the easiest domain and wiki, docs and code the hardest, so math gets
less and the hard domains get more of the batch. Arms with the same mixture share batches;
the two mixtures necessarily do not.
"""

from __future__ import annotations

from typing import Any

from lossreweight.experiments.harness import Context, Plan, Study
from lossreweight.experiments.page import Section, Table
from lossreweight.experiments.runs import Arm
from lossreweight.experiments.scales import full_scale, quick_scale
from lossreweight.experiments.stats import Records, excludes_zero, fmt_ci, paired, regime_text

# The static mixture (normalised by the loader): hard domains up, the easy synthetic one down.
STATIC_MIXTURE: dict[str, float] = {
    "code": 0.2,
    "docs": 0.2,
    "drama": 0.15,
    "math": 0.05,
    "quotes": 0.15,
    "scripture": 0.15,
    "wiki": 0.25,
}


def _mixture_value(m: dict[str, float]) -> str:
    return "{" + ", ".join(f"{d}: {w:g}" for d, w in m.items()) + "}"


ARMS: tuple[Arm, ...] = (
    Arm("uniform-mix", ("data.mixture=uniform", "reweight.strategy=uniform")),
    Arm("uniform-mix+linupper", ("data.mixture=uniform", "reweight.strategy=linupper")),
    Arm(
        "static-mix",
        (f"data.mixture={_mixture_value(STATIC_MIXTURE)}", "reweight.strategy=uniform"),
    ),
    Arm(
        "static-mix+linupper",
        (f"data.mixture={_mixture_value(STATIC_MIXTURE)}", "reweight.strategy=linupper"),
    ),
)
MIXTURE_OF = {
    "uniform-mix": "uniform",
    "uniform-mix+linupper": "uniform",
    "static-mix": "static",
    "static-mix+linupper": "static",
}
# (treatment, control): what each comparison isolates.
CONTRASTS: dict[str, tuple[str, str]] = {
    "linupper on the uniform mixture": ("uniform-mix+linupper", "uniform-mix"),
    "linupper on the static mixture": ("static-mix+linupper", "static-mix"),
    "static vs uniform mixture (no reweighting)": ("static-mix", "uniform-mix"),
    "static mixture + linupper vs uniform mixture": ("static-mix+linupper", "uniform-mix"),
}


def scale(quick: bool):  # noqa: ANN201 - a Scale
    return quick_scale(seeds=(0,), steps=8) if quick else full_scale(100, 20, (0,))


def contrast_table(contrasts: dict[str, Any], domains: list[str]) -> Table:
    rows = []
    for name, d in contrasts.items():
        rows.append(
            [
                name,
                d["val_loss"]["mean"],
                d["val_loss_domain_avg"]["mean"],
                *[d["val_loss_by_domain"][dom]["mean"] for dom in domains],
            ]
        )
    return Table(
        ["contrast (treatment - control)", "val_loss", "domain avg", *domains],
        rows,
        "paired differences in final validation loss (negative: the treatment is better)",
    )


def share_table(summary: dict[str, Any]) -> Table:
    rows = []
    for arm, r in summary["runs"].items():
        w = r["weights"].get("domain_weight_share", {})
        n = r["weights"].get("domain_sample_share", {})
        rows.append([arm, *[f"{w.get(d, 0):.3f} / {n.get(d, 0):.3f}" for d in summary["domains"]]])
    return Table(
        ["arm", *summary["domains"]],
        rows,
        "weight share / sample share per domain, averaged over the logged steps",
    )


class DomainMix(Study):
    name = "domain-mix"
    title = "domain-mix: sample reweighting on top of domain mixtures (100-step regime)"

    def plan(self, quick: bool) -> Plan:
        sc = scale(quick)
        return Plan(
            ARMS,
            sc.seeds,
            sc.overrides,
            baseline="uniform-mix",
            batch_groups=MIXTURE_OF,
            notes={"static_mixture": STATIC_MIXTURE, "mixture_of": MIXTURE_OF},
        )

    def extend(self, ctx: Context, records: Records, summary: dict[str, Any]) -> None:
        seeds, domains = ctx.plan.seeds, summary["domains"]
        summary["contrasts"] = {
            name: paired([records[t][s] for s in seeds], [records[c][s] for s in seeds], domains)
            for name, (t, c) in CONTRASTS.items()
        }

    def conclusions(self, ctx: Context, summary: dict[str, Any]) -> list[str]:
        out = []
        for name, d in summary["contrasts"].items():
            per = d["val_loss_by_domain"]
            better = [dom for dom in summary["domains"] if (per[dom]["mean"] or 0) < 0]
            out.append(
                f"{name}: val_loss {fmt_ci(d['val_loss'])}, "
                f"domain average {fmt_ci(d['val_loss_domain_avg'])} "
                f"nats; lower on {', '.join(better) or 'no domain'}."
            )
        return out

    def verdict(self, ctx: Context, summary: dict[str, Any]) -> str:
        d = summary["contrasts"]["linupper on the uniform mixture"]
        s = summary["contrasts"]["static vs uniform mixture (no reweighting)"]
        regime = regime_text(summary.get("setup") or [])
        return (
            "LinUpper on the uniform mixture changes the validation loss by "
            f"{fmt_ci(d['val_loss'])} nats and the "
            f"static mixture (no reweighting) by {fmt_ci(s['val_loss'])} nats "
            "against the uniform mixture "
            f"({_interval_words(d)}), {regime}."
        )

    def sections(
        self, ctx: Context, summary: dict[str, Any], files: dict[str, str]
    ) -> list[Section]:
        secs = super().sections(ctx, summary, files)
        secs.insert(
            1,
            Section(
                "Per-domain effects",
                summary["conclusions"],
                tables=[
                    contrast_table(summary["contrasts"], summary["domains"]),
                    share_table(summary),
                ],
            ),
        )
        return secs


def _interval_words(d: dict[str, Any]) -> str:
    ex = excludes_zero(d["val_loss"])
    if ex is None:
        return "one seed, so no interval"
    return "the LinUpper interval " + ("excludes zero" if ex else "includes zero")


STUDY = DomainMix()
