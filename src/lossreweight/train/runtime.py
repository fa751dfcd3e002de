"""Process-level set-up: device, precision, torch.distributed from torchrun's environment."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from lossreweight.config import TrainConfig
from lossreweight.errors import ConfigError, UserError

TIMEOUT_ENV = "LOSSREWEIGHT_DIST_TIMEOUT"
FAULT_ENV = "LOSSREWEIGHT_FAULT"


class PeerFailure(UserError):
    """Another rank died or stopped answering: a collective failed or timed out."""

    exit_code = 4


def collective_timeout() -> timedelta:
    """Collectives fail instead of hanging forever when a rank dies.

    The timeout is $LOSSREWEIGHT_DIST_TIMEOUT seconds.
    """
    raw = os.environ.get(TIMEOUT_ENV, "300")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r} must be a number of seconds > 0")
    return timedelta(seconds=seconds)


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
        raise ConfigError(
            "train.device=cuda but no CUDA device is visible; use train.device=cpu or auto"
        )
    device = torch.device("cuda", local_rank) if want_cuda else torch.device("cpu")
    if want_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if want_cuda else "gloo"
        dist.init_process_group(
            backend, timeout=collective_timeout(), device_id=device if want_cuda else None
        )
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


# -- test-only fault injection --------------------------------------------------------------
_FAULT_SIGNALS = {
    "kill": [signal.SIGKILL],
    "term": [signal.SIGTERM],
    "int": [signal.SIGINT],
    "int2": [signal.SIGINT] * 2,
}


def fault_point(point: str, step: int, rank: int = 0) -> None:
    """TEST-ONLY: a no-op unless $LOSSREWEIGHT_FAULT is set (tests/test_reliability*.py).

    LOSSREWEIGHT_FAULT="POINT:STEP:ACTION[:RANK]" makes the process (of rank RANK, else every
    rank) do ACTION on reaching POINT at STEP, so a test hits an exact moment:
      POINT  step (end of STEP, before its checkpoint) | eval (before evaluating after STEP)
             | save (mid-write of checkpoint STEP, after its model file)
      ACTION kill (SIGKILL) | term (SIGTERM) | int (SIGINT) | int2 (two SIGINTs)
             | hang (stall 2 s longer than the collective timeout, then go on)
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    want_point, want_step, action, *want_rank = spec.split(":")
    if want_point != point or int(want_step) != step or (want_rank and int(want_rank[0]) != rank):
        return
    if action == "hang":
        time.sleep(collective_timeout().total_seconds() + 2)
        return
    for sig in _FAULT_SIGNALS[action]:
        os.kill(os.getpid(), sig)
        time.sleep(0.05)  # let the Python-level handler run before the next signal
