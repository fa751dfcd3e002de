"""AdamW with decoupled weight decay on matrices only, and linear warm-up + cosine decay."""

from __future__ import annotations

import math

import torch

from lossreweight.config import TrainConfig

FUSED_DEVICES = ("cuda", "cpu", "mps", "xpu")


def build_optimizer(
    model: torch.nn.Module, cfg: TrainConfig, device: torch.device
) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    # nanoGPT's rule: decay 2-D weights (matmuls, embeddings), not norms/biases.
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused kernel (CUDA, and CPU since torch 2.4): one kernel per step, and it honours
    # `optimizer.found_inf`, which is how the trainer skips a non-finite step on device.
    fused = device.type in FUSED_DEVICES
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to cfg.lr * min_lr_ratio at
    cfg.schedule_length (max_steps, or the length a continued run started with); the floor
    after that."""
    warmup = cfg.lr_warmup  # lr_warmup_steps, or lr_warmup_fraction of schedule_length
    if warmup and step < warmup:
        return cfg.lr * (step + 1) / warmup
    span = max(cfg.schedule_length - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
