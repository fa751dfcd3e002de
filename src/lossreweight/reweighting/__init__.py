"""The method: strategies, temperature schedules, weights, and the `Reweighter`.

Pure PyTorch, no I/O; of this package only the standard-library leaf `lossreweight.plugins`
(strategies from installed packages' entry points) is imported here.
"""

from lossreweight.reweighting.accumulation import StepResult, accumulate_step
from lossreweight.reweighting.checks import DELTA_RANGE, TEMPERATURE_RANGE
from lossreweight.reweighting.reweighter import Reweighted, Reweighter
from lossreweight.reweighting.schedules import (
    SCHEDULES,
    Constant,
    Cosine,
    Exponential,
    Linear,
    StepSchedule,
    TemperatureSchedule,
    make_schedule,
)
from lossreweight.reweighting.strategies import (
    available_strategies,
    get_strategy,
    register_strategy,
)
from lossreweight.reweighting.weights import (
    COUNT_STATS,
    cap_weights,
    combine_stats,
    compute_weights,
    stats_to_python,
    weight_stats,
)

__all__ = [
    "COUNT_STATS",
    "DELTA_RANGE",
    "SCHEDULES",
    "TEMPERATURE_RANGE",
    "Constant",
    "Cosine",
    "Exponential",
    "Linear",
    "Reweighted",
    "Reweighter",
    "StepResult",
    "StepSchedule",
    "TemperatureSchedule",
    "accumulate_step",
    "available_strategies",
    "cap_weights",
    "combine_stats",
    "compute_weights",
    "get_strategy",
    "make_schedule",
    "register_strategy",
    "stats_to_python",
    "weight_stats",
]
