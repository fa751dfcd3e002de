"""Scoring strategies: s = f(x, delta) on losses normalised to [-delta, delta] (SPEC 2.2)."""

from __future__ import annotations

from collections.abc import Callable

import torch

StrategyFn = Callable[[torch.Tensor, float], torch.Tensor]


def uniform(x: torch.Tensor, delta: float) -> torch.Tensor:
    return torch.zeros_like(x)


def linupper(x: torch.Tensor, delta: float) -> torch.Tensor:
    return torch.clamp(x + delta, max=delta)


def quadratic(x: torch.Tensor, delta: float) -> torch.Tensor:
    return 1.0 - x * x / (delta * delta)


def extremes(x: torch.Tensor, delta: float) -> torch.Tensor:
    return x.abs()


def linear(x: torch.Tensor, delta: float) -> torch.Tensor:
    return (x + delta) / 2.0


_REGISTRY: dict[str, StrategyFn] = {
    "uniform": uniform,
    "linupper": linupper,
    "quadratic": quadratic,
    "extremes": extremes,
    "linear": linear,
}

# Names used by the reference code bases that we refuse or translate, with the reason.
_REFUSED = {
    "upper": "'upper' is ambiguous: it means 'linear' in the GPT-2 code and 'linupper' in the "
    "Llama code; say 'linear' or 'linupper'",
    "mid": "'mid' is called 'quadratic' here; use strategy='quadratic'",
}


_BUILTIN = frozenset({uniform, linupper, quadratic, extremes, linear})


def is_builtin(fn: StrategyFn) -> bool:
    """One of the paper's strategies (finite scores for finite inputs, nothing to check)."""
    return fn in _BUILTIN


def available_strategies() -> list[str]:
    return sorted(_REGISTRY)


def register_strategy(name: str, fn: StrategyFn, *, overwrite: bool = False) -> None:
    """Register a custom strategy `fn(x, delta) -> scores` (x in [-delta, delta], float32)."""
    if not isinstance(name, str) or not name:
        raise ValueError("strategy name must be a non-empty string")
    if not callable(fn):
        raise ValueError(f"strategy {name!r} must be a callable fn(x, delta) -> scores")
    if name in _REFUSED:
        raise ValueError(f"strategy name {name!r} is reserved: {_REFUSED[name]}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"strategy {name!r} is already registered; pass overwrite=True to replace it"
        )
    _REGISTRY[name] = fn


def get_strategy(name: str | StrategyFn) -> StrategyFn:
    if callable(name):
        return name
    if name in _REFUSED:
        raise ValueError(f"unknown strategy {name!r}: {_REFUSED[name]}")
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown strategy {name!r}; valid strategies: {', '.join(available_strategies())} "
            "(or register your own with lossreweight.reweighting.register_strategy)"
        ) from None


def strategy_name(strategy: str | StrategyFn) -> str:
    return strategy if isinstance(strategy, str) else getattr(strategy, "__name__", "custom")
