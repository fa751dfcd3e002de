"""Temperature schedules r(step) (SPEC 3). Each is a pure function of the step, so it
survives a resume without state."""

from __future__ import annotations

import math
import numbers
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

from lossreweight.reweighting.checks import is_integer, non_negative_int, temperature_value


def _positive(name: str, value: Any) -> float:
    # Every r of every schedule lies in TEMPERATURE_RANGE; the annealing schedules move
    # between r_start and r_end, so checking the ends bounds every step.
    return temperature_value(name, value)


@dataclass(frozen=True)
class TemperatureSchedule:
    """Base class: subclasses implement `__call__(step) -> r`."""

    def __call__(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    kind = "base"


@dataclass(frozen=True)
class Constant(TemperatureSchedule):
    r: float
    kind = "constant"

    def __post_init__(self) -> None:
        _positive("temperature", self.r)

    def __call__(self, step: int) -> float:
        return float(self.r)


@dataclass(frozen=True)
class StepSchedule(TemperatureSchedule):
    """r_warm before `switch_step`, then r (the Llama code: r = 100 for 2000 steps)."""

    r: float
    r_warm: float = 100.0
    switch_step: int = 2000
    kind = "step"

    def __post_init__(self) -> None:
        _positive("temperature r", self.r)
        _positive("r_warm", self.r_warm)
        non_negative_int("switch_step", self.switch_step)

    def __call__(self, step: int) -> float:
        return float(self.r_warm if step < self.switch_step else self.r)


@dataclass(frozen=True)
class _Annealing(TemperatureSchedule):
    r_start: float
    r_end: float
    span: int
    start_step: int = 0

    def __post_init__(self) -> None:
        _positive("r_start", self.r_start)
        _positive("r_end", self.r_end)
        if not is_integer(self.span) or self.span <= 0:
            raise ValueError(f"span must be an integer number of steps > 0, got {self.span!r}")
        non_negative_int("start_step", self.start_step)

    def progress(self, step: int) -> float:
        return min(max((step - self.start_step) / self.span, 0.0), 1.0)


@dataclass(frozen=True)
class Linear(_Annealing):
    kind = "linear"

    def __call__(self, step: int) -> float:
        p = self.progress(step)
        return self.r_start + (self.r_end - self.r_start) * p


@dataclass(frozen=True)
class Cosine(_Annealing):
    kind = "cosine"

    def __call__(self, step: int) -> float:
        p = self.progress(step)
        return self.r_end + 0.5 * (self.r_start - self.r_end) * (1.0 + math.cos(math.pi * p))


@dataclass(frozen=True)
class Exponential(_Annealing):
    """Geometric interpolation: r_start * (r_end / r_start) ** progress."""

    kind = "exponential"

    def __call__(self, step: int) -> float:
        p = self.progress(step)
        return self.r_start * (self.r_end / self.r_start) ** p


SCHEDULES: dict[str, type[TemperatureSchedule]] = {
    "constant": Constant,
    "step": StepSchedule,
    "linear": Linear,
    "cosine": Cosine,
    "exponential": Exponential,
}


def make_schedule(spec: float | int | TemperatureSchedule | dict[str, Any]) -> TemperatureSchedule:
    """A schedule from a number (constant), a schedule object, or a dict with `kind`."""
    if isinstance(spec, TemperatureSchedule):
        return spec
    if isinstance(spec, bool):
        raise ValueError("temperature must be a number > 0 or a schedule, not a boolean")
    if isinstance(spec, numbers.Real):
        return Constant(temperature_value("temperature", spec))
    if isinstance(spec, dict):
        params = dict(spec)
        kind = params.pop("kind", "constant")
        cls = SCHEDULES.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise ValueError(
                f"unknown temperature schedule {kind!r}; valid: {', '.join(SCHEDULES)}"
            )
        valid = [f.name for f in fields(cls)]
        unknown = [str(k) for k in params if k not in valid]
        if unknown:
            raise ValueError(
                f"unknown key {', '.join(map(repr, unknown))} for temperature schedule {kind!r}; "
                f"valid: kind, {', '.join(valid)}"
            )
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in params]
        if missing:
            raise ValueError(
                f"temperature schedule {kind!r} needs {', '.join(missing)}; valid keys: kind, "
                f"{', '.join(valid)}"
            )
        return cls(**params)
    raise ValueError(
        "temperature must be a number > 0, a TemperatureSchedule or a dict, got "
        f"{type(spec).__name__}"
    )
