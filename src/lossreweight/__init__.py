"""lossreweight: dynamic loss-based sample reweighting for language-model pretraining."""

from lossreweight.losses import per_sample_loss
from lossreweight.reweighting import Reweighter

__version__ = "0.1.0"
__all__ = ["Reweighter", "per_sample_loss", "__version__"]
