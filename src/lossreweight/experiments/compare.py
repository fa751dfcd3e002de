"""`lossreweight compare` and `lossreweight demo`: strategies side by side, as a study.

`Compare` is a `harness.Study` whose arms are strategies: every strategy x seed on the same
data and batches, through the harness's one pipeline (its checks, `--jobs`, `--no-train`,
index.html and summary.json). The command modules only parse flags.

The demo is a `Compare` of uniform vs LinUpper on the embedded corpus, in the paper's regime.
The `replicate` protocol (2.6 tokens per parameter, uniform burn-in for the first 5% of the
steps, lr warm-up 2.5%, cosine to 0.2x, weight decay 0.01, the natural-text domains) at its
smallest sizes, so it fits a 2-core CPU:

- full: the 0.5M-parameter model, one seed, both runs side by side (about 5 minutes on an
  idle 2-core machine, data preparation included); its runs are the replicate study's uniform
  and linupper-r0.4 at seed 0, so a demo next to a finished replicate copies them.
- quick: the tiny quick model on a corpus slice, three seeds (well under a minute), so the
  verdict has an interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lossreweight.experiments.harness import Plan, Study
from lossreweight.experiments.runs import Arm

DEMO_STRATEGIES: tuple[str, ...] = ("uniform", "linupper")
DEMO_FULL_SEEDS: tuple[int, ...] = (0,)
DEMO_QUICK_SEEDS: tuple[int, ...] = (0, 1, 2)
DEMO_OUT = Path("runs/demo")
DEMO_QUICK_OUT = Path("runs/demo-quick")


class Compare(Study):
    """Strategies x seeds on one config, each arm `reweight.strategy=<name>`."""

    kind = "compare"
    reuse_siblings = False  # a compare folder trains its own runs (the demo copies them)

    def __init__(
        self,
        config: str | Path,
        strategies: Sequence[str],
        seeds: Sequence[int] = (0,),
        overrides: Sequence[str] = (),
        *,
        title: str = "",
    ) -> None:
        self.config = config
        self.strategies, self.seeds = list(strategies), list(seeds)
        self.overrides = tuple(overrides)
        self.name = self.kind
        self.title = title or f"compare: {', '.join(self.strategies)} on {config}"

    def plan(self, quick: bool) -> Plan:
        return Plan(
            tuple(Arm.strategy(s) for s in self.strategies),
            tuple(self.seeds),
            self.overrides,
            config=self.config,
            notes={"strategies": list(self.strategies)},
        )


class Demo(Compare):
    """uniform vs linupper in the paper's regime (`lossreweight demo`)."""

    kind = "demo"
    reuse_siblings = True  # next to a finished replicate its runs are copied

    def __init__(self, quick: bool = False, extra_overrides: Sequence[str] = ()) -> None:
        super().__init__(
            "tiny",
            DEMO_STRATEGIES,
            DEMO_QUICK_SEEDS if quick else DEMO_FULL_SEEDS,
            [*demo_overrides(quick), *extra_overrides],
            title=f"demo{' (quick)' if quick else ''}: uniform vs linupper in the paper's regime",
        )


def demo_overrides(quick: bool) -> tuple[str, ...]:
    from lossreweight.experiments.scales import paper_scale

    sc, _ = paper_scale(quick)
    return sc.overrides
