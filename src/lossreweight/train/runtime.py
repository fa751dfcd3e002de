"""Process-level set-up: device, precision, torch.distributed from torchrun's environment."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from lossreweight.errors import ConfigError
from lossreweight.train.config import TrainConfig

# Collectives fail instead of hanging forever when a rank dies.
COLLECTIVE_TIMEOUT = timedelta(seconds=float(os.environ.get("LOSSREWEIGHT_DIST_TIMEOUT", "300")))


@dataclass
class Runtime:
    device: torch.device
    rank: int
    local_rank: int
    world_size: int
    autocast_dtype: torch.dtype | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Single process, or torchrun's env:// rendezvous (gloo on CPU, NCCL on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is visible; use train.device=cpu or auto")
    device = torch.device("cuda", local_rank) if want_cuda else torch.device("cpu")
    if want_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if want_cuda else "gloo"
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT, device_id=device if want_cuda else None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if want_cuda else "fp32"
    # bf16 matmul on CPU is ~100x slower than fp32 here; allowed, but only when asked for.
    autocast = torch.bfloat16 if precision == "bf16" else None
    if want_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(device, rank, local_rank, world, autocast)


def teardown_runtime() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
