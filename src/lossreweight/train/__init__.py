"""Training: config, runtime, loop, evaluation, checkpoints, metrics."""

from lossreweight.config import RunConfig, load_config
from lossreweight.train.loop import Trainer, TrainingDiverged, TrainResult, train

__all__ = ["RunConfig", "TrainResult", "Trainer", "TrainingDiverged", "load_config", "train"]
