"""conditions: when does LinUpper beat uniform? Burn-in position, redundancy, an easy block, length.

The `replicate` protocol (0.5M parameters, 2.6 tokens/param, AdamW with lr warm-up 2.5% and
cosine to 0.2x, r = 0.4) with one condition changed at a time, each LinUpper arm paired with
uniform on the same batches from the same init:

- burn-in position: uniform weights for 5% or 25% of the steps, or until the smoothed train
  loss is BURN_IN_MARGIN nats below the unigram entropy of the training mix (`progress`: the
  model has learned more than word frequencies);
- redundancy dose-response: 0%, 20% or 40% of the training samples drawn from a pool of a few
  exact repeats (`noise_data.repeat_file`), burn-in by progress;
- an easy block: 20% of the samples from the synthetic `math` domain instead of repeats;
- sequence length 512 instead of 128 at equal training tokens and equal samples per
  normalisation (16 sequences; a quarter of the steps), burn-in by progress, 2 seeds.

Per arm: the validation loss on the clean natural-text domains (the question a user asks),
the average over every trained domain, the share of the batch weight that the redundant or
easy block gets after the burn-in (vs its share of the samples), and where the burn-in ended
(step, validation loss, unigram entropy). The page opens with the answer in one sentence.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from lossreweight.errors import ConfigError
from lossreweight.experiments.harness import Context, Plan, Study
from lossreweight.experiments.noise_data import (
    REPEAT_DOMAIN,
    clean_tokenizer,
    mixture_value,
    natural_counts,
    repeat_file,
)
from lossreweight.experiments.page import Section, Table
from lossreweight.experiments.runs import Arm, RunRecord, run_arms
from lossreweight.experiments.scales import (
    EVALS_PER_RUN,
    NATURAL_DOMAINS,
    paper_setup,
)
from lossreweight.experiments.stats import (
    Records,
    excludes_zero,
    fmt_ci,
    mean,
    mean_domain_loss,
    measured_burn_in,
    share_after,
    spread,
)
from lossreweight.metric_names import DOMAIN_AVG_LOSS

SEEDS, SEQ_SEEDS, QUICK_SEEDS = (0, 1, 2), (0, 1), (0, 1)
# A larger machine runs the study at another model size and more seeds (benchmarks/gpu_evidence.py):
# LOSSREWEIGHT_CONDITIONS_SIZE (a key of scales.MODEL_SIZES) and LOSSREWEIGHT_CONDITIONS_SEEDS.
SIZE_ENV, SEEDS_ENV = "LOSSREWEIGHT_CONDITIONS_SIZE", "LOSSREWEIGHT_CONDITIONS_SEEDS"
TEMPERATURE = 0.4
BURN_IN_MARGIN = 0.5  # nats below the unigram entropy: clearly past word frequencies
MATH_DOMAIN = "math"
LONG_SEQ = 512  # vs the protocol's 128 (quick: 4x the quick length)

# burn-in name -> overrides (the protocol's own is a 5% fraction)
BURN_INS: dict[str, tuple[str, ...]] = {
    "burn5": ("reweight.warmup_fraction=0.05",),
    "burn25": ("reweight.warmup_fraction=0.25",),
    "progress": (
        "reweight.warmup_fraction=0",
        f"reweight.burn_in_below_unigram={BURN_IN_MARGIN:g}",
    ),
}
# condition -> (block domain or None, its share of the training samples)
MIXES: dict[str, tuple[str | None, float]] = {
    "": (None, 0.0),
    "@repeat20": (REPEAT_DOMAIN, 0.2),
    "@repeat40": (REPEAT_DOMAIN, 0.4),
    "@math20": (MATH_DOMAIN, 0.2),
}


def _mix_overrides(base: Sequence[str], cond: str) -> tuple[str, ...]:
    """The data overrides of a mix: one tokenizer for every arm (the clean corpus's), plus the
    block and the mixture that gives it its share."""
    common = ("data.tokenizer.kind=hf", f"data.tokenizer.path={clean_tokenizer(base)}")
    domain, share = MIXES.get(cond, (None, 0.0))
    if domain is None:
        return common
    counts = natural_counts(base)
    sources = (f"data.sources=[embedded,{repeat_file(base)}]",) if domain == REPEAT_DOMAIN else ()
    return (
        *common,
        *sources,
        "data.domains=[" + ",".join((*NATURAL_DOMAINS, domain)) + "]",
        f"data.mixture={mixture_value(counts, domain, share)}",
    )


def _long_seq(quick: bool) -> int:
    return 4 * 32 if quick else LONG_SEQ


def _long_overrides(quick: bool, steps: int) -> tuple[str, ...]:
    """Sequences 4x longer, a quarter of the steps: equal tokens, equal samples per step."""
    seq = _long_seq(quick)
    long_steps = max(4, steps // 4)
    return (
        f"data.seq_len={seq}",
        f"model.max_seq_len={seq}",
        f"train.max_steps={long_steps}",
        f"eval.every={max(1, long_steps // EVALS_PER_RUN)}",
    )


def _seeds() -> tuple[int, ...]:
    n = os.environ.get(SEEDS_ENV)
    if n is None:
        return SEEDS
    if not n.isdigit() or int(n) < 1:
        raise ConfigError(f"{SEEDS_ENV} must be a whole number of seeds >= 1, got {n!r}")
    return tuple(range(int(n)))


def _long_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    """Two seeds for the length arms on a CPU budget (3 seeds); all of them beyond that."""
    return tuple(seeds[:2]) if len(seeds) <= 3 else tuple(seeds)


class Conditions(Study):
    name = "conditions"
    title = "conditions: when does LinUpper beat uniform? (burn-in, redundancy, length)"
    metric = "clean_val_loss"
    metric_label = "clean natural-text validation loss"

    def plan(self, quick: bool) -> Plan:
        size = None if quick else os.environ.get(SIZE_ENV) or None
        seeds = QUICK_SEEDS if quick else _seeds()
        base, run, steps, params = paper_setup(quick, size)
        lin = ("reweight.strategy=linupper", f"reweight.temperature={TEMPERATURE:g}")
        uni = ("reweight.strategy=uniform",)
        arms: list[Arm] = []
        groups: dict[str, str] = {}
        long, seq = (*run, *_long_overrides(quick, steps)), f"@seq{_long_seq(quick)}"

        def add(name: str, overrides: tuple[str, ...], stage: int, group: str) -> None:
            arms.append(Arm(name, (*overrides, *run) if group != seq else overrides, stage))
            groups[name] = group

        # Stage order = what a stopped study has first: burn-in, repeats, math, length.
        clean = _mix_overrides(base, "")
        add("uniform", (*clean, *uni), 0, "")
        for b in ("burn5", "progress", "burn25"):
            add(f"linupper-{b}", (*clean, *lin, *BURN_INS[b]), 0, "")
        for stage, cond in enumerate(("@repeat20", "@repeat40", "@math20"), start=1):
            data = _mix_overrides(base, cond)
            add(f"uniform{cond}", (*data, *uni), min(stage, 2), cond)
            add(
                f"linupper-progress{cond}",
                (*data, *lin, *BURN_INS["progress"]),
                min(stage, 2),
                cond,
            )
        add(f"uniform{seq}", (*clean, *uni, *long), 3, seq)
        add(
            f"linupper-progress{seq}",
            (*clean, *lin, *BURN_INS["progress"], *long),
            3,
            seq,
        )
        pairs = {a.name: "uniform" + groups[a.name] for a in arms}
        return Plan(
            tuple(arms),
            seeds,
            base,
            batch_groups={a: g or "clean" for a, g in groups.items()},
            paired_to=pairs,
            notes={
                "params": params,
                "temperature": TEMPERATURE,
                "burn_in_margin_nats": BURN_IN_MARGIN,
                "mixes": {c.lstrip("@") or "clean": list(v) for c, v in MIXES.items()},
                "model_size": size or ("tiny-a" if quick else "0.5M"),
                "long_sequence": _long_seq(quick),
                "seeds_long_sequence": list(_long_seeds(seeds)),
            },
        )

    def train(self, ctx: Context) -> Records:
        """The length arms at their own (fewer) seeds; everything else at the plan's."""
        p = ctx.plan
        long = [a for a in p.arms if "@seq" in a.name]
        rest = [a for a in p.arms if a not in long]
        common = dict(
            log=ctx.log, reuse_from=[ctx.out.parent], jobs=ctx.jobs, train_missing=ctx.train_missing
        )
        records = run_arms(p.config, list(p.overrides), rest, p.seeds, ctx.out / "runs", **common)
        seeds = _long_seeds(p.seeds)
        records.update(
            run_arms(p.config, list(p.overrides), long, seeds, ctx.out / "runs", **common)
        )
        return records

    def extend(self, ctx: Context, records: Records, summary: dict[str, Any]) -> None:
        long = _long_seeds(ctx.plan.seeds)  # the length arms are planned at fewer seeds
        summary["complete"] = all(
            set(records.get(a.name, {})) == set(long if "@seq" in a.name else ctx.plan.seeds)
            for a in ctx.plan.arms
        )
        summary["arms"] = arms_block(records)
        summary["fidelity"] = fidelity_rows(summary)

    def plots(self, ctx: Context, records: Records, summary: dict[str, Any]) -> dict[str, str]:
        from lossreweight.experiments.plots import plot_loss_curves

        clean = {a: records[a] for a in records if "@" not in a}
        return {
            "gaps": plot_gaps(ctx.out / "paired_gaps.png", summary["arms"]),
            "loss_curves": plot_loss_curves(ctx.out / "loss_curves.png", clean).name,
        }

    def conclusions(self, ctx: Context, summary: dict[str, Any]) -> list[str]:
        out = []
        for arm, a in summary["arms"].items():
            if arm.startswith("uniform"):
                continue
            block = (
                f"the {a['block']} block gets {a['block_weight_share']:.1%} of the weight at "
                f"{a['block_sample_share']:.1%} of the samples; "
                if a["block"] and a["block_weight_share"] is not None
                else ""
            )
            out.append(
                f"{arm}: clean val loss - uniform {fmt_ci(a['paired_clean'])} nats, all trained "
                f"domains {fmt_ci(a['paired_all'])}; {block}burn-in ended at step "
                f"{_fmt_step(a)} (val loss there {_num(a['burn_in_val_loss'])}, unigram "
                f"entropy {_num(a['unigram_entropy'])})."
            )
        return out

    def verdict(self, ctx: Context, summary: dict[str, Any]) -> str:
        return verdict_sentence(summary)

    def sections(
        self, ctx: Context, summary: dict[str, Any], files: dict[str, str]
    ) -> list[Section]:
        rows = [
            [
                arm,
                a["condition"],
                ", ".join(str(s) for s in a["seeds"]),
                a["clean_val_loss"],
                fmt_ci(a["paired_clean"]) if not arm.startswith("uniform") else "\u2014",
                a["val_loss_domain_avg"],
                fmt_ci(a["paired_all"]) if not arm.startswith("uniform") else "\u2014",
                _pct(a["block_sample_share"]),
                _pct(a["block_weight_share"]),
                _fmt_step(a),
                _num(a["burn_in_val_loss"]),
                _num(a["unigram_entropy"]),
            ]
            for arm, a in summary["arms"].items()
        ]
        table = Table(
            [
                "arm",
                "condition",
                "seeds",
                "clean val loss",
                "clean - uniform [95% CI]",
                "all domains",
                "all - uniform [95% CI]",
                "block sample share",
                "block weight share",
                "burn-in end (step / steps)",
                "val loss at burn-in end",
                "unigram entropy",
            ],
            rows,
            "clean val loss: mean over the five natural-text domains; all domains: mean over "
            "every trained domain; shares averaged over the steps after the burn-in (nats)",
        )
        return [
            Section(
                "When LinUpper beats uniform",
                summary["conclusions"],
                images=[
                    (files["gaps"], "paired gap vs redundancy share and vs burn-in position"),
                    (files["loss_curves"], "loss curves on the clean mix"),
                ],
                tables=[table],
            ),
        ]


# -- numbers --------------------------------------------------------------------------------
def _block_share(run: RunRecord, key: str, domain: str | None, after: int | None) -> float | None:
    return 0.0 if domain is None else share_after(run, key, domain, after)


def clean_val_loss(run: RunRecord) -> float | None:
    return mean_domain_loss(run, NATURAL_DOMAINS)


def _diffs(a: Sequence[float | None], b: Sequence[float | None]) -> list[float | None]:
    return [x - y if x is not None and y is not None else None for x, y in zip(a, b, strict=True)]


def arms_block(records: Records) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for arm, by_seed in records.items():
        cond = arm[arm.index("@") :] if "@" in arm else ""
        domain, share = MIXES.get(cond, (None, 0.0))
        base_arm = "uniform" + cond
        seeds = sorted(s for s in by_seed if s in records.get(base_arm, {}))
        runs = [by_seed[s] for s in seeds]
        base = [records[base_arm][s] for s in seeds]
        burns = [measured_burn_in(r.final) for r in runs]
        ends = [b.get("end_step") for b in burns]
        clean = [clean_val_loss(r) for r in runs]
        everything = [r.final.get(DOMAIN_AVG_LOSS) for r in runs]
        out[arm] = {
            "condition": cond.lstrip("@") or "clean",
            "block": domain,
            "block_fraction": share,
            "seeds": seeds,
            "steps": runs[0].final.get("steps") if runs else None,
            "clean_val_loss": mean(clean),
            "val_loss_domain_avg": mean(everything),
            "paired_clean": spread(_diffs(clean, [clean_val_loss(r) for r in base])),
            "paired_all": spread(_diffs(everything, [r.final.get(DOMAIN_AVG_LOSS) for r in base])),
            "block_sample_share": mean(
                [
                    _block_share(r, "domain_sample_share", domain, e)
                    for r, e in zip(runs, ends, strict=True)
                ]
            ),
            "block_weight_share": mean(
                [
                    _block_share(r, "domain_weight_share", domain, e)
                    for r, e in zip(runs, ends, strict=True)
                ]
            ),
            "burn_in_rule": burns[0].get("rule") if burns else None,
            "burn_in_end_step": mean(ends) if all(e is not None for e in ends) else None,
            "burn_in_end_per_seed": ends,
            "burn_in_val_loss": mean([b.get("val_loss") for b in burns]),
            "unigram_entropy": mean([b.get("unigram_entropy") for b in burns]),
        }
    return out


def fidelity_rows(summary: dict[str, Any]) -> list[list[str]]:
    """This study's conditions next to the paper's."""
    arms = summary["arms"]
    setup = summary.get("setup") or []
    tpp = max((r.get("tokens_per_param") or 0 for r in setup), default=0)
    params = max((r.get("params") or 0 for r in setup), default=0)
    prog = arms.get("linupper-progress", {})
    end = prog.get("burn_in_end_step")
    steps = prog.get("steps") or summary.get("steps")
    where = (
        f"by progress: step {end:.0f} of {steps} ({end / steps:.0%}), val loss "
        f"{_num(prog.get('burn_in_val_loss'))} vs unigram entropy "
        f"{_num(prog.get('unigram_entropy'))}; 5% and 25% arms beside it"
        if end is not None and steps
        else "5%, 25% and by progress (past the unigram entropy)"
    )
    return [
        ["tokens per parameter", "2.6", f"{tpp:.2f}" if tpp else "?", "matches"],
        ["model size", "124M", f"{params / 1e6:.2f}M" if params else "?", "differs"],
        ["burn-in position", "1,000 of 20,000 steps, far below unigram", where, "varied"],
        [
            "lr schedule",
            "AdamW 5e-4, 500 warm-up, cosine to 0.2x",
            "warm-up 2.5%, cosine to 0.2x",
            "ratios match",
        ],
        ["weight decay, clip", "0.01, 1.0", "0.01, 1.0", "matches"],
        ["temperature r", "0.4", f"{TEMPERATURE:g}", "matches"],
        ["sequence length", "512", "128 (512 in the length arms)", "varied"],
        ["vocabulary", "GPT-2 BPE, 50,257", "byte-level BPE, 4,096", "differs"],
        [
            "redundancy",
            "SlimPajama (boilerplate, near-duplicates)",
            "0/20/40% exact repeats of 8 sequences; 20% synthetic math",
            "approximated",
        ],
        ["passes over the data", "< 1", "< 1 (4M-token corpus)", "matches"],
    ]


def verdict_sentence(summary: dict[str, Any]) -> str:
    arms = {a: v for a, v in summary["arms"].items() if not a.startswith("uniform")}
    if not arms:
        return "No LinUpper arm has finished yet."
    better, worse, open_ = [], [], []
    for arm, a in arms.items():
        ex, m = excludes_zero(a["paired_clean"]), a["paired_clean"].get("mean")
        label = _label(arm)
        (better if ex and m < 0 else worse if ex and m > 0 else open_).append(label)
    parts = []
    if better:
        parts.append(f"LinUpper beats uniform on clean validation loss with {', '.join(better)}")
    else:
        parts.append("LinUpper beats uniform on clean validation loss in none of the conditions")
    if worse:
        parts.append(f"it is worse with {', '.join(worse)}")
    if open_:
        parts.append(f"the interval includes zero with {', '.join(open_)}")
    n = len(summary.get("seeds") or [])
    params = summary.get("params") or 0
    size = f"{params / 1e6:.2f}M-parameter model" if params else "the study's model"
    return (
        "; ".join(parts)
        + f" ({size}, 2.6 tokens/param, sequence length 128 unless named, r = {TEMPERATURE:g}, "
        f"{n} seeds, paired 95% intervals)."
    )


def _label(arm: str) -> str:
    name, _, cond = arm.partition("@")
    burn = {
        "linupper-burn5": "a 5% burn-in",
        "linupper-burn25": "a 25% burn-in",
        "linupper-progress": "a burn-in ending past the unigram entropy",
    }.get(name, name)
    what = {
        "": "",
        "repeat20": " and 20% exact repeats",
        "repeat40": " and 40% exact repeats",
        "math20": " and 20% synthetic math",
    }.get(cond, f" at sequence length {cond[3:]}" if cond.startswith("seq") else f" ({cond})")
    return burn + what


def _num(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, int | float) else "\u2014"


def _pct(v: Any) -> str:
    return f"{v:.1%}" if isinstance(v, int | float) else "\u2014"


def _fmt_step(a: dict[str, Any]) -> str:
    end, steps = a.get("burn_in_end_step"), a.get("steps")
    if end is None:
        return "never" if a.get("burn_in_end_per_seed") else "\u2014"
    return f"{end:.0f} / {steps}" if steps else f"{end:.0f}"


# -- the study's own figure -----------------------------------------------------------------
def plot_gaps(path: Any, arms: dict[str, Any]) -> str:
    """Paired clean-loss gap (mean and 95% interval) against the redundant block's share and
    against where the burn-in ended (as a fraction of the run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)

    def point(ax: Any, x: float, a: dict[str, Any], label: str, marker: str) -> None:
        p = a["paired_clean"]
        if p.get("mean") is None:
            return
        lo, hi = p.get("ci95") or (p["mean"], p["mean"])
        ax.errorbar(x, p["mean"], yerr=[[p["mean"] - lo], [hi - p["mean"]]], fmt=marker, capsize=4)
        ax.annotate(label, (x, p["mean"]), textcoords="offset points", xytext=(6, 4), fontsize=8)

    for arm, share, label in (
        ("linupper-progress", 0.0, "0%"),
        ("linupper-progress@repeat20", 0.2, "20% repeats"),
        ("linupper-progress@repeat40", 0.4, "40% repeats"),
    ):
        if arm in arms:
            point(left, share, arms[arm], label, "o")
    if "linupper-progress@math20" in arms:
        point(left, 0.2, arms["linupper-progress@math20"], "20% math", "s")
    left.set_xlabel("share of training samples from the redundant / easy block")
    left.set_title("gap vs redundancy (burn-in by progress)")
    for arm in ("linupper-burn5", "linupper-progress", "linupper-burn25"):
        a = arms.get(arm)
        if a and a.get("burn_in_end_step") is not None and a.get("steps"):
            point(right, a["burn_in_end_step"] / a["steps"], a, arm.split("-")[1], "o")
    right.set_xlabel("burn-in end (fraction of the run)")
    right.set_title("gap vs burn-in position (clean mix)")
    for ax in (left, right):
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_ylabel("clean val loss: LinUpper - uniform (nats)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


STUDY = Conditions()
