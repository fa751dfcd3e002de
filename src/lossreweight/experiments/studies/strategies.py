"""uniform, linupper, quadratic, extremes on the same batches, several seeds (100-step regime).

Per-domain and average validation loss, the paired difference to uniform per seed with its
95% interval, and steps to reach uniform's final loss. The tiny preset shortened to 100 steps:
a short-training regime (about 0.14 tokens per parameter), not the paper's; `replicate` is
the paper's regime.
"""

from __future__ import annotations

from typing import Any

from lossreweight.experiments.harness import Context, Plan, Study
from lossreweight.experiments.page import Section, Table
from lossreweight.experiments.runs import Arm
from lossreweight.experiments.scales import full_scale, quick_scale

STRATEGIES: tuple[str, ...] = ("uniform", "linupper", "quadratic", "extremes")


def paired_table(summary: dict[str, Any]) -> Table:
    """val_loss - uniform for each seed, then the mean and its 95% interval."""
    seeds = summary["seeds"]
    rows = []
    for arm, r in summary["runs"].items():
        d = r.get("diff_vs_uniform")
        if arm == "uniform" or d is None:
            continue
        v = d["val_loss"]
        ci = v["ci95"] or [None, None]
        rows.append(
            [arm, *v["per_seed"], v["mean"], *ci, *d["steps_to_baseline_final"]["per_seed"]]
        )
    cols = [
        "arm",
        *[f"seed {s}" for s in seeds],
        "mean",
        "95% lo",
        "95% hi",
        *[f"steps seed {s}" for s in seeds],
    ]
    return Table(
        cols,
        rows,
        "paired val_loss - uniform per seed in nats (negative: better), and steps to "
        "reach uniform's final val_loss per seed (empty: not reached)",
    )


class Strategies(Study):
    name = "strategies"
    title = "strategies: uniform, linupper, quadratic, extremes (100-step regime)"

    def plan(self, quick: bool) -> Plan:
        sc = quick_scale(seeds=(0, 1)) if quick else full_scale(100, 20, (0, 1, 2))
        return Plan(tuple(Arm.strategy(s) for s in STRATEGIES), sc.seeds, sc.overrides)

    def sections(
        self, ctx: Context, summary: dict[str, Any], files: dict[str, str]
    ) -> list[Section]:
        secs = super().sections(ctx, summary, files)
        secs.insert(
            1,
            Section(
                "Paired differences to uniform",
                summary["conclusions"],
                tables=[paired_table(summary)],
            ),
        )
        return secs


STUDY = Strategies()
