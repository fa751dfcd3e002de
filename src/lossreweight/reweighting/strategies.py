"""Scoring strategies: s = f(x, delta) on losses normalised to [-delta, delta] (SPEC 2.2).

Besides the paper's five, a strategy comes from `register_strategy` (in the same process) or
from an installed package's entry point in the group `lossreweight.strategies` (found by the
command line and the config too): `name = "module:function"`; see examples/strategy_plugin.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lossreweight import plugins

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
    # By identity: `in` on the frozenset would hash `fn`, and a @dataclass strategy (eq=True,
    # so __hash__ = None) is unhashable.
    return any(fn is builtin for builtin in _BUILTIN)


ENTRY_POINT_GROUP = "lossreweight.strategies"


def _entry_points() -> dict[str, plugins.EntryPoint]:
    """Installed packages' strategies by name; the built-in and reserved names are not theirs."""
    return plugins.installed(ENTRY_POINT_GROUP, {*_REFUSED, *(fn.__name__ for fn in _BUILTIN)})


def _load_entry_point(ep: plugins.EntryPoint) -> StrategyFn:
    fn = plugins.load(ep, "strategy")
    if not callable(fn):
        where = f"entry point {ep.name} = {ep.value!r} (group {ENTRY_POINT_GROUP})"
        raise ValueError(f"strategy {ep.name!r} from {where} is not a callable fn(x, delta)")
    return fn


def available_strategies() -> list[str]:
    """The built-in, registered and installed (entry point) strategy names."""
    return sorted({*_REGISTRY, *_entry_points()})


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
        ep = _entry_points().get(name) if isinstance(name, str) else None
        if ep is not None:  # not cached: what is installed decides (Python caches the module)
            return _load_entry_point(ep)
        raise ValueError(
            f"unknown strategy {name!r}; valid strategies: {', '.join(available_strategies())} "
            "(or register your own with lossreweight.reweighting.register_strategy, or install "
            f"a package with a {ENTRY_POINT_GROUP!r} entry point)"
        ) from None


def strategy_name(strategy: str | StrategyFn) -> str:
    return strategy if isinstance(strategy, str) else getattr(strategy, "__name__", "custom")
