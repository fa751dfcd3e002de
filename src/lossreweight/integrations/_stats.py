"""Reweighting statistics kept on device between logging steps, fetched in one transfer.

Framework loggers (the HF Trainer's `log`, TensorBoard, W&B) want flat `name -> float`
dictionaries, so per-domain vectors become one scalar per domain.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# Counts add up over the logging interval; every other statistic is averaged over it.
SUMMED = ("num_invalid", "all_invalid")


class StatsAccumulator:
    """Running sums of `Reweighter.stats` (device tensors) since the last `pop()`."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        # A handful of tiny device ops per call; no host synchronisation.
        for key, value in stats.items():
            v = value.detach().to(torch.float32)
            if key in self._sums:
                self._sums[key] = self._sums[key] + v
                self._counts[key] += 1
            else:
                self._sums[key] = v.clone()
                self._counts[key] = 1

    def __len__(self) -> int:
        return max(self._counts.values(), default=0)

    def pop(
        self, prefix: str = "reweight/", domain_names: Sequence[str] | None = None
    ) -> dict[str, float]:
        """Interval means (sums for counts) as Python floats, then reset. One device-to-host copy."""
        if not self._sums:
            return {}
        keys = list(self._sums)
        flat = torch.cat([self._sums[k].reshape(-1) for k in keys]).cpu().tolist()
        out: dict[str, float] = {}
        i = 0
        for key in keys:
            n = self._sums[key].numel()
            scale = 1.0 if key in SUMMED else 1.0 / self._counts[key]
            vals = [x * scale for x in flat[i : i + n]]
            i += n
            if self._sums[key].dim() == 0:
                out[prefix + key] = vals[0]
            else:
                for d, x in enumerate(vals):
                    name = domain_names[d] if domain_names is not None and d < len(domain_names) else str(d)
                    out[f"{prefix}{key}/{name}"] = x
        self._sums.clear()
        self._counts.clear()
        return out
