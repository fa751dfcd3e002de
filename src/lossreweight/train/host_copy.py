"""Device -> host reads that do not stall the device: values are copied into pinned host memory
with a non-blocking copy when a step is queued and read when they are needed (typically one
step later), by which time the device has long produced them while the next step's work
stays queued. On a CPU the "device" is the host: the values are simply kept."""

from __future__ import annotations

import math

import torch


class Pending:
    """Named tensors on their way to the host; `get()` waits for them (not for later work)."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self._shapes = {k: tuple(v.shape) for k, v in tensors.items()}
        flat = (
            torch.cat([v.detach().reshape(-1).to(torch.float32) for v in tensors.values()])
            if tensors
            else torch.zeros(0)
        )
        self._event: torch.cuda.Event | None = None
        if flat.device.type == "cuda":
            self._host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
            self._host.copy_(flat, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self._host = flat  # already on the host; CPU ops have completed
        self._values: dict[str, float | list[float]] | None = None

    def ready(self) -> bool:
        return self._event is None or self._event.query()

    def get(self) -> dict[str, float | list[float]]:
        """The values as Python numbers (a list for a tensor with dimensions). Waits for the copy
        only: the event is recorded right after it, so later queued work does not delay it."""
        if self._values is None:
            if self._event is not None:
                self._event.synchronize()
            # .numpy() of a host tensor: a plain memory read (it refuses device tensors, so it
            # can never hide a device sync).
            flat = self._host.numpy().tolist()
            out: dict[str, float | list[float]] = {}
            i = 0
            for key, shape in self._shapes.items():
                n = math.prod(shape)
                out[key] = flat[i : i + n] if shape else flat[i]
                i += n
            self._values = out
        return self._values
