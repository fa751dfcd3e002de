"""The checkpointer: when to save, and what a checkpoint holds (a registry of stateful parts).

Files and their safety (atomic publish, safe formats) are `train/checkpoint.py`'s; this module
decides the cadence and gathers the state: the model and optimizer (tensor files) and, in
state.json, each registered part's `state_dict()` under its name plus the counters at the top.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from lossreweight.errors import ConfigError
from lossreweight.model.run_dir import find_latest_checkpoint
from lossreweight.train.checkpoint import load_checkpoint, save_checkpoint
from lossreweight.train.runtime import Runtime


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Counters:
    """Where training stands: optimizer steps taken and tokens consumed (all ranks)."""

    step: int = 0
    tokens: int = 0

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "tokens": self.tokens}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.tokens = state["step"], state["tokens"]


class Checkpointer:
    """Saves every `every` steps (0: only at the end), at the last step and on a stop request;
    keeps the newest `keep`; restores the newest complete checkpoint of `run_dir`."""

    def __init__(
        self,
        run_dir: Path,
        rt: Runtime,
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        counters: Counters,
        parts: dict[str, Stateful],
        every: int,
        keep: int,
    ) -> None:
        self.run_dir, self.rt = Path(run_dir), rt
        self.model, self.optimizer, self.counters, self.parts = model, optimizer, counters, parts
        self.every, self.keep = every, keep

    def due(self, step: int, *, last: bool = False, stopping: bool = False) -> bool:
        return last or stopping or bool(self.every and step % self.every == 0)

    def save(self) -> Path:
        """Collective under torch.distributed: every rank calls it at the same step."""
        state = {
            **self.counters.state_dict(),
            **{name: p.state_dict() for name, p in self.parts.items()},
        }
        return save_checkpoint(
            self.run_dir,
            self.counters.step,
            self.model,
            self.optimizer,
            state,
            self.rt,
            keep=self.keep,
        )

    def restore(self) -> Path | None:
        """Load the newest complete checkpoint into every registered part.

        Returns its path, or None when there is none.
        """
        latest = find_latest_checkpoint(self.run_dir)
        if latest is None:
            return None
        state = load_checkpoint(latest, self.model, self.optimizer, self.rt)
        self.counters.load_state_dict(state)
        for name, part in self.parts.items():
            try:
                part.load_state_dict(state[name])
            except ValueError as exc:  # e.g. a reweighter saved with other settings
                raise ConfigError(str(exc)) from None
        return latest
