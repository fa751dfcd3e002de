"""lossreweight: dynamic loss-based sample reweighting for language-model pretraining.

The public API is `Reweighter` and `per_sample_loss`. They are imported lazily, so that
`import lossreweight.data` or `lossreweight --help` does not pay for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Reweighter", "__version__", "per_sample_loss"]

if TYPE_CHECKING:
    from lossreweight.losses import per_sample_loss
    from lossreweight.reweighting import Reweighter


def __getattr__(name: str) -> Any:
    if name == "Reweighter":
        from lossreweight.reweighting import Reweighter

        return Reweighter
    if name == "per_sample_loss":
        from lossreweight.losses import per_sample_loss

        return per_sample_loss
    raise AttributeError(f"module 'lossreweight' has no attribute {name!r}")
