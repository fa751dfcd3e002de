"""An example study: linupper at r = 0.4 and r = 1 against uniform, on the tiny preset.

A study says what to train (`plan`: arms, seeds, shared overrides); the harness trains every
arm at every seed on the same batches, summarises (paired differences to uniform with 95%
intervals), plots, and writes index.html and summary.json. Override `extend`, `plots`,
`conclusions`, `verdict` or `sections` to add your own numbers and parts of the page.
"""

from lossreweight.experiments.harness import Plan, Study
from lossreweight.experiments.runs import Arm

# --quick: a model and corpus small enough for a test (seconds on a CPU).
QUICK = (
    "data.max_chars_per_domain=20000",
    "data.tokenizer.vocab_size=512",
    "data.seq_len=32",
    "model.dim=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "model.multiple_of=32",
    "model.max_seq_len=32",
    "train.batch_size=4",
    "train.max_steps=6",
    "train.lr_warmup_steps=2",
    "train.threads=1",
    "eval.every=3",
    "eval.batch_size=16",
    "eval.max_sequences_per_domain=8",
    "log.tensorboard=false",
)


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
        if quick:
            return Plan(arms, seeds=(0, 1), overrides=QUICK)
        return Plan(arms, seeds=(0, 1, 2), overrides=("train.max_steps=200",))


STUDY = LinupperTemperatures()
