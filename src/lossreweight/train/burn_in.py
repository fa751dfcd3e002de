"""The burn-in: when reweighting starts, measured and recorded.

Weights stay uniform for a burn-in because per-sample losses say little before the model knows
some language (the paper: 1,000 of 20,000 steps; its Llama code: r = 100 for 2,000 steps). It
ends after `reweight.warmup_steps` (or `warmup_fraction` of the run), or, with a progress
target, at the first step after that minimum where the smoothed training loss is below the
target: `reweight.burn_in_until_loss` nats, or `reweight.burn_in_below_unigram` nats below
the unigram entropy of the training mix (`data.unigram`).

The decision is taken on the host from the step's mean loss over all ranks (every rank reads
the same numbers, so every rank decides the same step) as the reporter reads it, one step
behind the device: reweighting starts with the next step the loop runs. Where it ended, the
smoothed loss, the unigram entropy and a validation loss measured there are saved in the
checkpoint and in final.json (`burn_in`), so a study can say where on the loss curve the
method started.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lossreweight.config import RunConfig
from lossreweight.data import PreparedData, resolve_mixture
from lossreweight.data.unigram import UNIGRAM_FILE, train_mix_entropy
from lossreweight.errors import ConfigError
from lossreweight.metric_names import DOMAIN_AVG_LOSS, LOSS
from lossreweight.reweighting import Reweighter

# While a progress target is not reached the Reweighter's burn-in is "never" (any step count
# a run can reach is below it).
_NOT_YET = 2**62


class BurnIn:
    """Ends the Reweighter's burn-in at a fixed step or by the model's progress."""

    # Checkpoints written before the burn-in was saved lack its state: their burn-in was fixed.
    absent_in_older_checkpoints = True

    def __init__(
        self,
        reweighter: Reweighter,
        *,
        min_steps: int,
        target: float | None = None,
        rule: str = "",
        unigram_entropy: float | None = None,
        smoothing: float = 0.9,
    ) -> None:
        self.reweighter, self.min_steps, self.target = reweighter, min_steps, target
        self.rule = rule or f"after {min_steps} steps"
        self.unigram_entropy, self.smoothing = unigram_entropy, smoothing
        self.ema: float | None = None  # exponential moving average of the train loss
        self.seen = 0  # steps in the average (for its bias correction)
        self.end_step: int | None = min_steps if target is None else None
        self._reached = False  # the target was met at a step read since the last apply()
        self.at_end: dict[str, Any] = {}  # the smoothed loss and validation losses at the end
        self._sync()

    @classmethod
    def for_run(cls, cfg: RunConfig, data: PreparedData, reweighter: Reweighter) -> BurnIn:
        rw = cfg.reweight
        entropy = None
        if rw.burn_in_below_unigram is not None or (data.root / UNIGRAM_FILE).is_file():
            shares = resolve_mixture(
                cfg.data.mixture, {d: data.train_sequences(d) for d in data.domains}
            )
            entropy = train_mix_entropy(data, shares)
        target, rule = None, f"after {cfg.burn_in_steps} steps"
        if rw.burn_in_until_loss is not None:
            target = rw.burn_in_until_loss
            rule = f"smoothed train loss < {target:g}"
        elif rw.burn_in_below_unigram is not None:
            if entropy is None or entropy <= 0:
                raise ConfigError(
                    "reweight.burn_in_below_unigram needs the unigram entropy of the training "
                    "data, and this data has no training tokens; use reweight.warmup_steps"
                )
            target = entropy - rw.burn_in_below_unigram
            rule = (
                f"smoothed train loss < unigram entropy {entropy:.3f} - "
                f"{rw.burn_in_below_unigram:g} = {target:.3f}"
            )
        if target is not None and cfg.burn_in_steps:
            rule += f", after at least {cfg.burn_in_steps} steps"
        return cls(
            reweighter,
            min_steps=cfg.burn_in_steps,
            target=target,
            rule=rule,
            unigram_entropy=entropy,
            smoothing=rw.burn_in_smoothing,
        )

    @property
    def smoothed_loss(self) -> float | None:
        if self.ema is None or not self.seen:
            return None
        return self.ema / (1.0 - self.smoothing**self.seen)

    def observe(self, step: int, values: Mapping[str, Any], skipped: bool = False) -> None:
        """A finished step's host values (the reporter calls this for every step it reads)."""
        loss = values.get("mean_loss")
        if skipped or not isinstance(loss, int | float) or not math.isfinite(loss):
            return
        s = self.smoothing
        self.ema = float(loss) * (1 - s) + (0.0 if self.ema is None else self.ema * s)
        self.seen += 1
        smoothed = self.smoothed_loss
        if self.end_step is None and self.target is not None and smoothed is not None:
            self._reached = self._reached or smoothed < self.target

    def apply(self, next_step: int) -> None:
        """After the reporter read the finished steps: a reached target ends the burn-in before
        `next_step` (the 0-based index of the next step to run), or at min_steps if later."""
        if self._reached and self.end_step is None:
            self.end_step = max(self.min_steps, next_step)
            self.at_end["train_loss_smoothed"] = self.smoothed_loss
            self._sync()

    def eval_due(self, next_step: int) -> bool:
        """Evaluate now (before running `next_step`): the burn-in ends here."""
        return bool(self.end_step) and next_step == self.end_step and "val_loss" not in self.at_end

    def measured(self, result: Mapping[str, Any]) -> str:
        """Keep the validation losses at the end of the burn-in; the console line to print."""
        self.at_end.setdefault("train_loss_smoothed", self.smoothed_loss)
        self.at_end["val_loss"] = result.get(LOSS)
        if result.get(DOMAIN_AVG_LOSS) is not None:
            self.at_end["val_loss_domain_avg"] = result[DOMAIN_AVG_LOSS]
        line = f"burn-in ended after {self.end_step} steps ({self.rule})"
        if result.get(LOSS) is not None:
            line += f": val loss {result[LOSS]:.4f}"
        if self.unigram_entropy is not None:
            line += f", unigram entropy {self.unigram_entropy:.4f}"
        return line + "; reweighting starts"

    def summary(self) -> dict[str, Any]:
        """What final.json records under `burn_in`."""
        return {
            "rule": self.rule,
            "min_steps": self.min_steps,
            "target_loss": self.target,
            "end_step": self.end_step,  # steps of uniform weights (None: never ended)
            "unigram_entropy": self.unigram_entropy,
            **self.at_end,
        }

    # -- checkpointed state -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "ema": self.ema,
            "seen": self.seen,
            "end_step": self.end_step,
            "reached": self._reached,
            "at_end": dict(self.at_end),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore (before the Reweighter's own state, whose saved burn-in this sets). A
        checkpoint from before burn-in state was saved restores nothing: its burn-in was fixed."""
        if not state:
            return
        self.ema, self.seen = state.get("ema"), int(state.get("seen", 0))
        self._reached = bool(state.get("reached", False))
        self.at_end = dict(state.get("at_end") or {})
        if self.target is not None:
            self.end_step = state.get("end_step")
        self._sync()

    def _sync(self) -> None:
        self.reweighter.warmup_steps = _NOT_YET if self.end_step is None else self.end_step
