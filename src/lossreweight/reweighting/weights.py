"""From losses to weights over one scope (SPEC 2), and the statistics of SPEC 5.

Pure tensor functions: float32, on the losses' device, no host synchronisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from lossreweight.reweighting.checks import (
    DELTA_RANGE,
    losses_arg,
    max_weight_value,
    number_in,
    on_cpu,
    stats_parts,
    temperature_value,
    tensor_arg,
    valid_arg,
)
from lossreweight.reweighting.strategies import StrategyFn, get_strategy, is_builtin, strategy_name

EPS = 1e-6


def valid_mask(losses: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    """Finite losses are valid; `present` masks out padding rows."""
    valid = torch.isfinite(losses)
    return valid if present is None else valid & present


def normalise(losses: torch.Tensor, valid: torch.Tensor, delta: float) -> torch.Tensor:
    """x_i = delta * (2 l_i - l_max - l_min) / max(l_max - l_min, eps); 0 for invalid rows."""
    lo = torch.where(valid, losses, torch.inf).amin()
    hi = torch.where(valid, losses, -torch.inf).amax()
    # No valid sample: lo=inf, hi=-inf; pin both to 0 so nothing turns NaN.
    any_valid = valid.any()
    lo = torch.where(any_valid, lo, 0.0)
    hi = torch.where(any_valid, hi, 0.0)
    safe = torch.where(valid, losses, 0.0)
    x = delta * (2.0 * safe - hi - lo) / torch.clamp(hi - lo, min=EPS)
    return torch.where(valid, x.clamp(-delta, delta), 0.0)


def softmax_weights(scores: torch.Tensor, valid: torch.Tensor, temperature: float) -> torch.Tensor:
    """w = softmax(s / r) over the valid entries; invalid entries get exactly 0."""
    s = torch.where(valid, scores, -torch.inf)
    s_max = s.amax()
    s_max = torch.where(torch.isfinite(s_max), s_max, 0.0)
    e = torch.exp((s - s_max) / temperature)  # exp(-inf) = 0 for invalid rows
    return e / torch.clamp(e.sum(), min=torch.finfo(e.dtype).tiny)


def cap_weights(weights: torch.Tensor, valid: torch.Tensor, max_weight: float) -> torch.Tensor:
    """Project `weights` (1-D, summing to 1 over `valid`, a boolean mask of the same shape) onto
    {sum w = 1, 0 <= w <= c/M}, c = `max_weight` >= 1, keeping the order (SPEC 2.4). Bad
    arguments are a TypeError/ValueError naming the argument (values checked on CPU only)."""
    weights = tensor_arg("weights", weights)
    if weights.dim() != 1 or not weights.is_floating_point():
        raise ValueError(
            f"weights must be a 1-D floating-point tensor (one weight per sample), got "
            f"{weights.dtype} of shape {tuple(weights.shape)}"
        )
    valid = valid_arg(valid, weights, of="weights")
    cap = max_weight_value(max_weight, optional=False)
    if on_cpu(weights) and weights.numel() and not bool(torch.isfinite(weights[valid]).all()):
        raise ValueError("weights must be finite where valid is True (got NaN or inf)")
    return _cap(weights, valid, cap)


def _cap(weights: torch.Tensor, valid: torch.Tensor, max_weight: float) -> torch.Tensor:
    """Project onto {sum w = 1, 0 <= w <= c/M} keeping the order (water-filling, SPEC 2.4).

    w_i = min(c/M, k u_i) with k such that the sum is 1. With the entries sorted in
    decreasing order, if the top j are capped then k_j = (1 - j c/M) / sum_{i >= j} u_i;
    the answer is the smallest j whose k_j u_(j) <= c/M. Vectorised, no host sync.
    """
    m = valid.sum().to(weights.dtype)
    cap = max_weight / torch.clamp(m, min=1.0)
    u = torch.where(valid, weights, 0.0)
    u_sorted, _ = torch.sort(u, descending=True)
    tail = torch.flip(torch.cumsum(torch.flip(u_sorted, [0]), 0), [0])  # sum_{i >= j}
    j = torch.arange(u.numel(), device=u.device, dtype=u.dtype)
    k = (1.0 - j * cap) / torch.clamp(tail, min=torch.finfo(u.dtype).tiny)
    ok = (k * u_sorted <= cap * (1.0 + 1e-6)) & (j * cap < 1.0)
    first = torch.argmax(ok.to(torch.int8))  # first True; all False cannot happen for c >= 1
    capped = torch.minimum(cap.expand_as(u), k.gather(0, first.view(1)) * u)  # gather: no sync
    return torch.where(valid, capped, 0.0)


def strategy_scores(
    strategy: StrategyFn,
    x: torch.Tensor,
    delta: float,
    valid: torch.Tensor,
    *,
    name: str,
    check: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """s = f(x, delta) as float32, and `valid` without the samples whose score is not finite.

    The shape is always checked (free). A non-finite score (a custom strategy's bug, or its
    answer to an extreme input) makes its sample invalid (weight 0, counted in num_invalid),
    so one bad score cannot turn every weight into NaN. With `check`, on CPU, it is an error
    instead: reading the values there costs no device synchronisation.
    """
    scores = strategy(x, delta)
    if not isinstance(scores, torch.Tensor):
        raise TypeError(
            f"strategy {name!r} returned {type(scores).__name__}; it must return a tensor of "
            "scores "
            f"shaped like its input x {tuple(x.shape)}"
        )
    if scores.shape != x.shape:
        raise ValueError(
            f"strategy {name!r} returned scores of shape {tuple(scores.shape)} for x of shape "
            f"{tuple(x.shape)}; it must return one score per sample (elementwise in x)"
        )
    scores = scores.to(torch.float32)
    finite = torch.isfinite(scores)
    if check and on_cpu(scores) and bool((valid & ~finite).any()):
        raise ValueError(
            f"strategy {name!r} returned a non-finite score for a finite loss; it must map every "
            f"x in [-{delta:g}, {delta:g}] to a finite score"
        )
    return scores, valid & finite


def scope_weights(
    losses: torch.Tensor,
    *,
    strategy: StrategyFn,
    temperature: float,
    delta: float = 1.0,
    max_weight: float | None = None,
    valid: torch.Tensor | None = None,
    name: str = "custom",
    check: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights over one scope (SPEC 2) and the valid mask they were computed over (the given
    one, less the samples with a non-finite score)."""
    losses = losses.detach().to(torch.float32)
    if valid is None:
        valid = valid_mask(losses)
    x = normalise(losses, valid, delta)
    scores, valid = strategy_scores(strategy, x, delta, valid, name=name, check=check)
    w = softmax_weights(scores, valid, temperature)
    if max_weight is not None:
        w = _cap(w, valid, max_weight)
    return w, valid


def compute_weights(
    losses: torch.Tensor,
    *,
    strategy: str | StrategyFn,
    temperature: float,
    delta: float = 1.0,
    max_weight: float | None = None,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weights over one scope (SPEC 2): sum to 1 over valid samples, 0 elsewhere.

    `strategy` is a name ("linupper", ...) or a callable f(x, delta) -> scores; bad arguments
    are a TypeError/ValueError naming the argument and the fix."""
    losses = losses_arg(losses)
    if losses.numel() == 0:
        raise ValueError("losses is empty: pass the per-sample losses of at least one sample")
    fn = get_strategy(strategy)
    lo, hi = DELTA_RANGE
    return scope_weights(
        losses,
        strategy=fn,
        temperature=temperature_value("temperature", temperature),
        delta=number_in("delta", delta, lo, hi, " (losses are normalised to [-delta, delta])"),
        max_weight=max_weight_value(max_weight),
        valid=None if valid is None else valid_arg(valid, losses),
        name=strategy_name(strategy),
        check=not is_builtin(fn),
    )[0]


def uniform_weights(valid: torch.Tensor) -> torch.Tensor:
    m = valid.sum().to(torch.float32)
    return valid.to(torch.float32) / torch.clamp(m, min=1.0)


def weight_stats(
    weights: torch.Tensor,
    losses: torch.Tensor,
    valid: torch.Tensor,
    temperature: float,
    *,
    present: torch.Tensor | None = None,
    domain_ids: torch.Tensor | None = None,
    num_domains: int = 0,
) -> dict[str, torch.Tensor]:
    """SPEC 5 statistics as 0-d (or [num_domains]) device tensors; fetched only when logged."""
    dev = weights.device
    w = torch.where(valid, weights, 0.0)
    vf = valid.to(torch.float32)
    m = vf.sum()
    m1 = torch.clamp(m, min=1.0)
    # torch.full, not torch.tensor(...): a host-to-device copy would synchronise.
    n_present = torch.full((), float(vf.numel()), device=dev) if present is None else present.sum()
    big = torch.full((), torch.finfo(torch.float32).max, device=dev)
    max_w = w.amax()
    min_w = torch.where(valid, w, big).amin()
    min_w = torch.where(m > 0, min_w, 0.0)
    ess = 1.0 / torch.clamp((w * w).sum(), min=1e-30)
    plogp = torch.where(w > 0, w * torch.log(torch.clamp(w, min=1e-30)), 0.0)
    entropy = -plogp.sum()
    log_m = torch.log(torch.clamp(m, min=2.0))
    safe_l = torch.where(valid, losses.to(torch.float32), 0.0)
    mean_l = safe_l.sum() / m1
    mean_w = w.sum() / m1
    dl = torch.where(valid, safe_l - mean_l, 0.0)
    dw = torch.where(valid, w - mean_w, 0.0)
    denom = torch.sqrt((dl * dl).sum() * (dw * dw).sum())
    corr = torch.where(denom > 1e-20, (dl * dw).sum() / torch.clamp(denom, min=1e-20), 0.0)
    stats = {
        "num_samples": m,
        "temperature": torch.full((), float(temperature), device=dev),
        "max_weight_x_m": max_w * m,
        "min_weight_x_m": min_w * m,
        "ess_fraction": torch.where(m > 0, ess / m1, 0.0),
        "entropy_fraction": torch.where(m > 1, entropy / log_m, 1.0),
        "frac_above_2_over_m": (valid & (w > 2.0 / m1)).to(torch.float32).sum() / m1,
        "num_invalid": n_present.to(torch.float32) - m,
        "all_invalid": (m == 0).to(torch.float32),
        "weight_loss_corr": corr,
        "mean_loss": mean_l,
        "weighted_loss": (w * safe_l).sum(),
    }
    if domain_ids is not None and num_domains > 0:
        # Invalid samples, and ids outside [0, num_domains) (checked eagerly only on CPU, see
        # checks.domain_ids_arg), go to an overflow bin that is dropped: no device-side assert.
        d = domain_ids.to(torch.long)
        d = torch.where(valid & (d >= 0) & (d < num_domains), d, num_domains)
        w_share = torch.zeros(num_domains + 1, device=dev).scatter_add_(0, d, w)[:num_domains]
        n_share = torch.zeros(num_domains + 1, device=dev).scatter_add_(0, d, vf)[:num_domains]
        stats["domain_weight_share"] = w_share
        stats["domain_sample_share"] = n_share / m1
    return stats


# Statistics that are counts: they add up when scopes are combined. Every other statistic is
# a per-scope mean, combined weighted by the scope's number of valid samples.
COUNT_STATS = ("num_samples", "num_invalid", "all_invalid")


def combine_stats(parts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One set of statistics for several scopes (the micro-batches of a step, the steps of a
    logging interval): counts add, means are weighted by each scope's valid samples.

    Statistics from `Reweighter` are already global over ranks (computed after the gather),
    so this is the only combination needed, in the trainer and in every integration. On
    device, no host synchronisation. `all_invalid` becomes the number of scopes that had no
    valid sample. The temperature is weighted like the other means (scopes of one step share
    it); only when no scope has a valid sample is it their plain mean. Weighting everything
    by samples makes the combination associative: combining partial combinations gives the
    same result as combining all the scopes at once, so a logger can fold as it goes.
    """
    parts = [p for p in stats_parts(parts) if p]
    if not parts:
        return {}
    if len(parts) == 1:
        return dict(parts[0])
    n = torch.stack([p["num_samples"].to(torch.float32) for p in parts])
    total = n.sum()
    share = n / torch.clamp(total, min=1.0)  # all scopes empty: every mean becomes 0
    out: dict[str, torch.Tensor] = {}
    # Keys every part has (a caller that passes domain ids only sometimes gets no shares).
    keys = [k for k in parts[0] if all(k in p for p in parts[1:])]
    for key in keys:
        try:
            vals = torch.stack([p[key].to(torch.float32) for p in parts])
        except (AttributeError, RuntimeError):
            raise ValueError(
                f"combine_stats: '{key}' is not a tensor of one shape in every part (e.g. "
                "domain shares from Reweighters with different num_domains); combine the "
                "statistics of one Reweighter"
            ) from None
        if key in COUNT_STATS:
            out[key] = vals.sum(0)
        elif key == "temperature":  # a setting: never 0 for lack of samples
            out[key] = torch.where(total > 0, (vals * share).sum(0), vals.mean(0))
        else:
            w = share.reshape(-1, *([1] * (vals.dim() - 1)))
            out[key] = (vals * w).sum(0)
    return out


def stats_to_python(stats: dict[str, torch.Tensor]) -> dict[str, float | list[float]]:
    """Fetch statistics to the host in one transfer (this is the only sync, do it when logging)."""
    if not stats:
        return {}
    # sync-ok: the one device-to-host copy, made at logging time only.
    flat = torch.cat([v.detach().reshape(-1).to(torch.float32) for v in stats.values()]).cpu()
    out: dict[str, float | list[float]] = {}
    i = 0
    for key, v in stats.items():
        n = v.numel()
        vals = flat[i : i + n].tolist()  # sync-ok: `flat` is already on the host
        out[key] = vals if v.dim() > 0 else vals[0]
        i += n
    for key in ("num_samples", "num_invalid"):
        if key in out and not math.isnan(out[key]):
            out[key] = int(round(out[key]))
    return out
