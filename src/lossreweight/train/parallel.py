"""The model as the loop trains it: compiled per block, with its per-sample loss, and wrapped
for data parallelism (DDP) or sharding (FSDP2) under torchrun."""

from __future__ import annotations

import torch

from lossreweight.config import TrainConfig
from lossreweight.model import CausalLM
from lossreweight.train.loss_module import PerSampleLoss
from lossreweight.train.runtime import Runtime


def wrap_model(model: CausalLM, cfg: TrainConfig, rt: Runtime) -> torch.nn.Module:
    """`model` (already on rt.device) inside a PerSampleLoss: [B, T] ids -> [B] losses."""
    fused = cfg.loss_path == "fused" or (cfg.loss_path == "auto" and model.vocab_size >= 16384)
    if cfg.compile:
        for block in model.blocks:  # per-block compile (torchtitan): small graphs, fast warm-up
            block.compile()
    module = PerSampleLoss(model, fused=fused, autocast_dtype=rt.autocast_dtype)
    if cfg.fsdp:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = (
            MixedPrecisionPolicy(param_dtype=rt.autocast_dtype, reduce_dtype=torch.float32)
            if rt.autocast_dtype
            else MixedPrecisionPolicy()
        )
        for block in model.blocks:
            fully_shard(block, mp_policy=mp)
        fully_shard(module, mp_policy=mp)
        return module
    if rt.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [rt.device.index] if rt.device.type == "cuda" else None
        return DDP(module, device_ids=ids, broadcast_buffers=False)
    return module
