"""An example study: linupper at r = 0.4 and r = 1 against uniform, on the tiny preset.

A study says what to train (`plan`: arms, seeds, shared overrides); the harness trains every
arm at every seed on the same batches, summarises (paired differences to uniform with 95%
intervals), plots, and writes index.html and summary.json. Override `extend`, `plots`,
`conclusions`, `verdict` or `sections` to add your own numbers and parts of the page.
"""

from lossreweight.experiments.harness import Plan, Study
from lossreweight.experiments.runs import Arm
from lossreweight.experiments.scales import full_scale, quick_scale


class LinupperTemperatures(Study):
    title = "linupper-temperatures: linupper at r = 0.4 and r = 1 against uniform"

    def plan(self, quick: bool) -> Plan:
        arms = (
            Arm.strategy("uniform"),
            *(
                Arm(f"linupper-r{r:g}", ("reweight.strategy=linupper", f"reweight.temperature={r}"))
                for r in (0.4, 1.0)
            ),
        )
        # --quick: a corpus slice and a model small enough for seconds per run; else the tiny
        # preset shortened to 100 steps, as the built-in short studies run it.
        scale = quick_scale(seeds=(0, 1), steps=6) if quick else full_scale(100, 20, (0, 1, 2))
        return Plan(arms, scale.seeds, scale.overrides)


STUDY = LinupperTemperatures()
