"""Model FLOPs utilisation: achieved FLOPs over the GPU's dense bf16 peak."""

from __future__ import annotations

import torch

# Dense (not sparse) bf16 tensor-core peaks from the vendors' data sheets, in FLOP/s.
PEAK_BF16_FLOPS = {
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "L4": 121e12,
    "A10": 125e12,
    "4090": 165e12,
}


def peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of a CUDA device, for MFU; None for a CPU or an unknown GPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def mfu(
    tokens_per_s: float, flops_per_token: float, peak: float | None, world_size: int = 1
) -> float | None:
    """Share of the peak of `world_size` devices that `tokens_per_s` uses; None without a peak."""
    if not peak:
        return None
    return tokens_per_s * flops_per_token / (peak * world_size)
