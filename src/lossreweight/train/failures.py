"""The trainer's user errors (one line each, `lossreweight.errors.UserError`) and the tests that
tell a user-fixable failure (out of memory, a dead peer) from a bug."""

from __future__ import annotations

import torch
import torch.distributed as dist

from lossreweight.errors import UserError


class TrainingDiverged(UserError):
    """Too many non-finite steps in a row."""

    exit_code = 3


class Interrupted(UserError):
    """Stopped by a second Ctrl-C / SIGTERM, or by one before training started."""

    exit_code = 130


class OutOfMemory(UserError):
    """The device (or host) ran out of memory: a setting to change."""


class RunDirError(UserError):
    """The file system refused (disk full, read-only, not a directory, ...)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's failure."""
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    return isinstance(exc, oom) or "can't allocate memory" in str(exc)


def is_peer_failure(exc: BaseException) -> bool:
    """A collective that failed because another rank died or hung (gloo / NCCL wording)."""
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc).lower()
    return any(
        w in text
        for w in ("gloo", "nccl", "connection closed", "connection reset", "timed out", "timeout")
    )
