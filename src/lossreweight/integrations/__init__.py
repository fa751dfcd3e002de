"""Framework integrations: Hugging Face `Trainer` and Lightning.

- `lossreweight.integrations.hf_trainer.ReweightingTrainer`: a `transformers.Trainer` subclass.
- `lossreweight.integrations.hf_loss.ReweightedLossFunc`: a `compute_loss_func` (+ callback)
  for users who keep their own Trainer subclass.
- `lossreweight.integrations.lightning`: `ReweightingMixin`, which also logs the losses and
  statistics per optimizer step (needs the optional `lightning` extra; imported only from
  that module).

Importing this package imports neither transformers nor lightning; the two Hugging Face names
are also available here, loaded on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ReweightingTrainer": "lossreweight.integrations.hf_trainer",
    "ReweightedLossFunc": "lossreweight.integrations.hf_loss",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
