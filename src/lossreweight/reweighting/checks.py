"""Argument checks that name the argument and the fix, in the caller's terms (issue 13.6).

Checks of types, shapes and Python numbers cost nothing. Checks of tensor *values* need the
values on the host: on CPU that is free and done eagerly; on an accelerator it would stall
the step (a host synchronisation), so there the values are not checked and the callers
handle bad values without a device-side assert (see `Reweighter` and `per_sample_loss`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import torch

# Temperatures r the weights can be computed with (the softmax is over s / r, with scores s
# in [-delta, delta] for the built-in strategies, delta = 1 by default):
# - r > 1e6: exp(s / r) differs from 1 by at most 2e-6, a few float32 ulps: the weights are
#   uniform to float32 precision (use strategy "uniform"); r = 1e308 is inf in float32.
# - r < 1e-3: every sample whose score is more than 87 * r = 0.087 below the best one gets
#   exp(< -87) = 0, below float32's smallest normal number: the weights collapse onto the
#   top samples (one sample for distinct losses); below ~1e-38, r itself is 0 in float32
#   and the weights are NaN.
TEMPERATURE_RANGE = (1e-3, 1e6)
# delta only scales the normalised losses (and so the built-in scores), trading off against r;
# the paper uses 1. The bounds refuse absurd values (1e308 is inf in float32, and 1e-30 makes
# the quadratic strategy's x**2 / delta**2 overflow) with room on both sides of 1.
DELTA_RANGE = (1e-3, 1e3)


def is_number(value: Any) -> bool:
    """A real Python or numpy number, not a bool (True is 1 to Python, never to a user)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def number_in(name: str, value: Any, lo: float, hi: float, hint: str = "") -> float:
    """`value` as a float in [lo, hi], else a ValueError/TypeError naming `name`."""
    if not is_number(value):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}){hint}")
    v = float(value)
    if not math.isfinite(v) or not lo <= v <= hi:
        raise ValueError(f"{name}={value!r} is outside [{lo:g}, {hi:g}]{hint}")
    return v


def temperature_value(name: str, value: Any) -> float:
    lo, hi = TEMPERATURE_RANGE
    return number_in(
        name,
        value,
        lo,
        hi,
        "; below 1e-3 the weights collapse onto one sample, above 1e6 they are uniform "
        "(use strategy='uniform'): pick r in range",
    )


def non_negative_int(name: str, value: Any, what: str = "") -> int:
    if not is_integer(value) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0{what}, got {value!r}")
    return int(value)


def step_value(step: Any) -> int:
    """The optimizer step: a Python (or numpy) integer >= 0. Tensors are refused: reading a
    device tensor's value would synchronise."""
    if isinstance(step, torch.Tensor):
        raise TypeError(
            "step must be a Python int (the optimizer step), got a tensor: pass int(step) once "
            "per step"
        )
    return non_negative_int("step", step, " (the optimizer step, counted from 0)")


def accumulation_value(value: Any) -> int:
    if not is_integer(value) or value < 1:
        raise ValueError(
            "accumulation_steps must be an integer >= 1 (the micro-batches per optimizer step), "
            f"got {value!r}"
        )
    return int(value)


def tensor_arg(name: str, value: Any, *, fix: str = "") -> torch.Tensor:
    """`value` if it is a torch tensor, else a TypeError saying how to make one."""
    if isinstance(value, torch.Tensor):
        return value
    kind = type(value).__module__.split(".")[0] + "." + type(value).__name__
    if type(value).__module__.startswith("numpy"):
        how = f"convert it with torch.from_numpy({name})"
    else:
        how = f"convert it with torch.as_tensor({name})"
    raise TypeError(f"{name} must be a torch.Tensor, got {kind}; {fix or how}")


def on_cpu(t: torch.Tensor) -> bool:
    """Values of this tensor can be read without a device synchronisation (and without
    breaking a transform: under vmap or torch.compile the values are not concrete)."""
    if t.device.type != "cpu" or torch.compiler.is_compiling():
        return False
    wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return not (wrapped is not None and wrapped(t))


def losses_arg(losses: Any) -> torch.Tensor:
    losses = tensor_arg("losses", losses)
    if losses.dim() != 1:
        raise ValueError(
            f"losses must be 1-D (one loss per sample), got shape {tuple(losses.shape)}; "
            "use per_sample_loss(logits, labels) to reduce token losses per sample"
        )
    if not losses.is_floating_point():
        raise TypeError(
            f"losses must be a floating-point tensor, got {losses.dtype}; use losses.float()"
        )
    return losses


def domain_ids_arg(domain_ids: Any, losses: torch.Tensor, num_domains: int) -> torch.Tensor:
    """Integer domain ids, one per loss. On CPU the range is checked eagerly; elsewhere ids
    outside [0, num_domains) are left out of the per-domain statistics (their shares then sum
    to less than 1) instead of a device-side assert or a synchronisation."""
    domain_ids = tensor_arg("domain_ids", domain_ids)
    if domain_ids.shape != losses.shape:
        raise ValueError(
            f"domain_ids shape {tuple(domain_ids.shape)} must match losses {tuple(losses.shape)} "
            "(one id per sample)"
        )
    if domain_ids.is_floating_point() or domain_ids.is_complex() or domain_ids.dtype == torch.bool:
        raise TypeError(
            f"domain_ids must be an integer tensor, got {domain_ids.dtype}; use domain_ids.long()"
        )
    if num_domains > 0 and on_cpu(domain_ids) and domain_ids.numel():
        bad = (domain_ids < 0) | (domain_ids >= num_domains)
        if bool(bad.any()):
            first = int(domain_ids[bad][0])
            raise ValueError(
                f"domain_ids holds {first}, outside [0, {num_domains}) for "
                f"num_domains={num_domains}; "
                "give ids 0..num_domains-1 or raise num_domains"
            )
    return domain_ids


def weights_arg(weights: Any, losses: torch.Tensor) -> torch.Tensor:
    """Weights from `Reweighter.weights` (or the user's): same shape as the losses, >= 0 and
    not NaN. The values are checked on CPU only (see the module docstring)."""
    weights = tensor_arg("weights", weights)
    if weights.shape != losses.shape:
        raise ValueError(
            f"weights shape {tuple(weights.shape)} must match losses {tuple(losses.shape)}; "
            "pass the weights Reweighter.weights() returned for these losses"
        )
    if not weights.is_floating_point():
        raise TypeError(f"weights must be a floating-point tensor, got {weights.dtype}")
    if on_cpu(weights) and weights.numel():
        w = weights.detach()
        finite = torch.isfinite(w)
        if not bool(finite.all()) or bool((w < 0).any()):
            first = float(w[~finite][0]) if not bool(finite.all()) else 0.0
            bad = {0.0: "a negative weight"}.get(first, "NaN" if first != first else str(first))
            raise ValueError(
                f"weights must be finite and >= 0 (got {bad}); "
                "pass the weights Reweighter.weights() returned"
            )
    return weights


def valid_arg(valid: Any, losses: torch.Tensor, of: str = "losses") -> torch.Tensor:
    """A boolean mask, one entry per sample of `losses` (named `of`; True: the sample counts)."""
    valid = tensor_arg("valid", valid, fix="pass a boolean tensor, one flag per sample")
    if valid.shape != losses.shape:
        raise ValueError(
            f"valid shape {tuple(valid.shape)} must match {of} {tuple(losses.shape)} "
            "(one flag per sample)"
        )
    if valid.dtype != torch.bool:
        raise TypeError(f"valid must be a boolean tensor, got {valid.dtype}; use valid.bool()")
    return valid


def max_weight_value(max_weight: Any, *, optional: bool = True) -> float | None:
    """The cap c (a multiple of the uniform weight 1/M): a finite number >= 1, or None."""
    if max_weight is None and optional:
        return None
    if not is_number(max_weight) or not math.isfinite(max_weight) or not max_weight >= 1:
        none = ", or None for no cap" if optional else ""
        raise ValueError(
            "max_weight must be a finite number >= 1 (a multiple of the uniform weight 1/M)"
            f"{none}; got {max_weight!r}"
        )
    return float(max_weight)


def stats_parts(parts: Any) -> list[dict[str, torch.Tensor]]:
    """`combine_stats`'s argument: a list (or tuple, or other iterable) of statistics dicts as
    `Reweighter` returns them, each empty or holding a tensor `num_samples`. Type checks only:
    no tensor value is read."""
    if isinstance(parts, dict) or not isinstance(parts, Iterable):
        raise TypeError(
            f"combine_stats takes a list of statistics dicts, got {type(parts).__name__}; "
            "wrap one in a list: combine_stats([stats])"
        )
    out = list(parts)
    for i, part in enumerate(out):
        if not isinstance(part, Mapping):
            raise TypeError(
                f"combine_stats: part {i} is of type {type(part).__name__}, not a statistics dict "
                "(Reweighted.stats or Reweighter.weights_and_stats()[1])"
            )
        if not part:
            continue
        if not isinstance(part.get("num_samples"), torch.Tensor):
            raise ValueError(
                f"combine_stats: part {i} has no tensor 'num_samples'; pass the statistics "
                "Reweighter returns (stats_to_python output cannot be combined)"
            )
    return out
