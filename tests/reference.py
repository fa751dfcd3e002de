"""An independent float64 numpy re-derivation of SPEC 2 (the tests' oracle)."""

from __future__ import annotations

import numpy as np

STRATEGIES = {
    "uniform": lambda x, d: np.zeros_like(x),
    "linupper": lambda x, d: np.minimum(x + d, d),
    "quadratic": lambda x, d: 1.0 - x**2 / d**2,
    "extremes": lambda x, d: np.abs(x),
    "linear": lambda x, d: (x + d) / 2.0,
}


def reference_weights(
    losses: np.ndarray, strategy: str, r: float, delta: float = 1.0, cap: float | None = None
) -> np.ndarray:
    losses = np.asarray(losses, dtype=np.float64)
    valid = np.isfinite(losses)
    w = np.zeros_like(losses)
    if not valid.any():
        return w
    lv = losses[valid]
    lo, hi = lv.min(), lv.max()
    x = delta * (2 * lv - hi - lo) / max(hi - lo, 1e-6)
    s = STRATEGIES[strategy](x, delta)
    e = np.exp((s - s.max()) / r)
    wv = e / e.sum()
    if cap is not None:
        wv = reference_cap(wv, cap)
    w[valid] = wv
    return w


def reference_cap(u: np.ndarray, c: float) -> np.ndarray:
    """Water-filling by bisection on k (a different algorithm from the implementation's)."""
    m = len(u)
    bound = c / m
    lo, hi = 0.0, 1.0 / max(u.min(), 1e-300) * 2 + 1.0
    for _ in range(200):
        k = (lo + hi) / 2
        if np.minimum(bound, k * u).sum() > 1.0:
            hi = k
        else:
            lo = k
    return np.minimum(bound, lo * u)
