"""Study `domain-mix`: sample reweighting on top of a domain mixture.

Four arms: the uniform domain mixture (1/6 per domain, the paper's setting) and a static
non-uniform mixture, each with uniform sample weights and with LinUpper. The static mixture
is fixed in advance, DoGE/DoReMi-style (those methods learn such weights; here they are set
by hand from one observation): in a uniform-mixture run of the tiny preset, math (synthetic
arithmetic) is by far the easiest domain and wiki, docs and code the hardest, so math gets
less and the hard domains get more of the batch. Arms with the same mixture share batches;
the two mixtures necessarily do not.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lossreweight.experiments import plotting as P
from lossreweight.experiments.arm_plots import standard_plots
from lossreweight.experiments.compare import standard_sections
from lossreweight.experiments.plotting import Section, Table
from lossreweight.experiments.runs import Arm, Log, run_arms
from lossreweight.experiments.studies.common import BASE_CONFIG, full_scale, quick_scale, study_dir
from lossreweight.experiments.study import write_study
from lossreweight.experiments.summary import fmt_pm, paired, summarize

NAME = "domain-mix"
# The static mixture (normalised by the loader): hard domains up, the easy synthetic one down.
STATIC_MIXTURE: dict[str, float] = {
    "code": 0.2, "docs": 0.2, "drama": 0.15, "math": 0.05, "scripture": 0.15, "wiki": 0.25,
}


def _mixture_value(m: dict[str, float]) -> str:
    return "{" + ", ".join(f"{d}: {w:g}" for d, w in m.items()) + "}"


ARMS: tuple[Arm, ...] = (
    Arm("uniform-mix", ("data.mixture=uniform", "reweight.strategy=uniform")),
    Arm("uniform-mix+linupper", ("data.mixture=uniform", "reweight.strategy=linupper")),
    Arm("static-mix", (f"data.mixture={_mixture_value(STATIC_MIXTURE)}", "reweight.strategy=uniform")),
    Arm("static-mix+linupper", (f"data.mixture={_mixture_value(STATIC_MIXTURE)}", "reweight.strategy=linupper")),
)
MIXTURE_OF = {"uniform-mix": "uniform", "uniform-mix+linupper": "uniform",
              "static-mix": "static", "static-mix+linupper": "static"}
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
        rows.append([name, d["val_loss"]["mean"], d["val_loss_domain_avg"]["mean"],
                     *[d["val_loss_by_domain"][dom]["mean"] for dom in domains]])
    return Table(["contrast (treatment - control)", "val_loss", "domain avg", *domains], rows,
                 "paired differences in final validation loss (negative: the treatment is better)")


def share_table(summary: dict[str, Any]) -> Table:
    rows = []
    for arm, r in summary["runs"].items():
        w = r["weights"].get("domain_weight_share", {})
        n = r["weights"].get("domain_sample_share", {})
        rows.append([arm, *[f"{w.get(d, 0):.3f} / {n.get(d, 0):.3f}" for d in summary["domains"]]])
    return Table(["arm", *summary["domains"]], rows,
                 "weight share / sample share per domain, averaged over the logged steps")


def run_domain_mix(out_dir: Path | str | None = None, *, quick: bool = False, log: Log | None = None) -> dict[str, Any]:
    start = time.perf_counter()
    out = study_dir(NAME, out_dir, quick)
    sc = scale(quick)
    records = run_arms(BASE_CONFIG, list(sc.overrides), list(ARMS), sc.seeds, out / "runs", log=log,
                       reuse_from=[out.parent])
    summary = summarize(records, baseline="uniform-mix", batch_groups=MIXTURE_OF)
    summary.update({"config": BASE_CONFIG, "overrides": list(sc.overrides),
                    "arms": {a.name: list(a.overrides) for a in ARMS}})
    domains = summary["domains"]
    contrasts = {name: paired([records[t][s] for s in sc.seeds], [records[c][s] for s in sc.seeds], domains)
                 for name, (t, c) in CONTRASTS.items()}
    colors = P.colors_for([a.name for a in ARMS])
    files = standard_plots(out, records, summary, colors=colors, baseline="uniform-mix")
    conclusions = []
    for name, d in contrasts.items():
        per = d["val_loss_by_domain"]
        better = [dom for dom in domains if (per[dom]["mean"] or 0) < 0]
        conclusions.append(f"{name}: val_loss {fmt_pm(d['val_loss']['mean'], d['val_loss']['std'])}, "
                           f"domain average {fmt_pm(d['val_loss_domain_avg']['mean'], d['val_loss_domain_avg']['std'])}; "
                           f"lower on {', '.join(better) or 'no domain'}.")
    summary.update({
        "study": NAME, "quick": quick, "steps": sc.steps, "static_mixture": STATIC_MIXTURE,
        "mixture_of": MIXTURE_OF, "contrasts": contrasts, "conclusions": conclusions,
        "files": {**files, "html": "index.html", "summary": "summary.json"},
        "runtime_s": round(time.perf_counter() - start, 2),
    })
    sections = standard_sections(summary, files, intro=[
        f"Uniform mixture (1/{len(domains)} per domain) vs a static mixture "
        f"{_mixture_value(STATIC_MIXTURE)} (normalised), each with uniform sample weights and with LinUpper "
        f"(r = 0.4), {sc.steps} steps of the tiny preset. Batches are shared within a mixture, not across.",
    ])
    sections.insert(1, Section("Per-domain effects", conclusions,
                               tables=[contrast_table(contrasts, domains), share_table(summary)]))
    return write_study(out, summary, "domain-mix: sample reweighting on top of domain mixtures", sections)
