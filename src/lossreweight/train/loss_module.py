"""The model plus its per-sample loss, as one module, so that DDP, FSDP2 and autocast wrap
everything the forward pass touches (the fused path uses the output weight outside the
model's own forward)."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from lossreweight.losses import per_sample_loss
from lossreweight.model import CausalLM


class PerSampleLoss(nn.Module):
    def __init__(self, model: CausalLM, *, fused: bool, autocast_dtype: torch.dtype | None) -> None:
        super().__init__()
        self.model = model
        self.fused = fused
        self.autocast_dtype = autocast_dtype

    def _autocast(self, device_type: str) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=self.autocast_dtype)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, T] ids -> [B] float32 mean next-token losses (NaN for rows with no target)."""
        with self._autocast(input_ids.device.type):
            if self.fused:
                h = self.model.hidden_states(input_ids)
                losses, _ = per_sample_loss(
                    hidden_states=h, lm_head_weight=self.model.output_weight, labels=input_ids
                )
            else:
                losses, _ = per_sample_loss(self.model(input_ids), input_ids)
        return losses
