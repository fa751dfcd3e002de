"""The report sections every arm comparison shares (compare, the demo, every study)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lossreweight.experiments.plotting import Section
from lossreweight.experiments.tables import results_table, weights_table


def standard_sections(
    summary: dict[str, Any], files: dict[str, str], *, intro: Sequence[str] = ()
) -> list[Section]:
    """The report sections every arm comparison shares."""
    base = summary.get("baseline")
    same = "yes" if summary["same_batches"] else "NO"
    setup = [
        *intro,
        f"Config {summary['config']} with overrides: {' '.join(summary['overrides']) or '(none)'}. "
        f"Seeds {summary['seeds']}; within a seed every arm has the same model init and, with the "
        f"same data settings, the same training batches (batch-order checksums equal across the "
        f"arms that should share them: {same}).",
    ]
    if base:
        setup.append(
            f"Paired differences are arm - {base} per seed (negative: lower loss than {base}). "
            f"'steps to {base}'s final' is the first step at which the arm's validation loss "
            f"reaches {base}'s final validation loss of the same seed, interpolated between "
            "evaluations."
        )
    return [
        Section("Protocol", setup),
        Section(
            "Validation loss",
            [],
            images=[
                (
                    files["loss_curves"],
                    "training loss and validation loss (mean, min-max band over seeds)",
                ),
                (files["val_loss_by_domain"], "final validation loss per domain"),
            ],
            tables=[results_table(summary)],
        ),
        Section(
            "Weights",
            [
                "max(w) x M is the largest weight of a batch times its size (1 = uniform); the "
                "paper argues it stays below 2. ESS / M is the effective sample size 1/sum(w^2) "
                "over M.",
            ],
            images=[
                (files["weight_diagnostics"], "weight diagnostics over training"),
                (
                    files["domain_weight_share"],
                    "each domain's share of the batch weight vs its share of samples",
                ),
                (files["domain_share_ratio"], "weight share / sample share per domain"),
            ],
            tables=[weights_table(summary)],
        ),
    ]
