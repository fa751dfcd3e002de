"""What checkpoint integrity costs: `save_checkpoint` (files hashed as they are written, a
manifest, a finiteness check) against the writer it replaced (safetensors `save_file` +
`torch.save` to a path, no hashes), and `load_checkpoint` (every file's sha256 checked first)
against the same loads without the check. Model + AdamW state of a preset, on the CPU, into a
temporary folder; interleaved rounds, median of the per-round ratios.

    .venv/bin/python benchmarks/bench_checkpoint.py [--preset tiny|small] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
)

import lossreweight.train.checkpoint as checkpoint
from lossreweight.model import build_model
from lossreweight.train import load_config
from lossreweight.train.checkpoint import MODEL_PREFIX, _dedupe, load_checkpoint, save_checkpoint
from lossreweight.train.loss_module import PerSampleLoss
from lossreweight.train.runtime import Runtime

RT = Runtime(device=torch.device("cpu"), rank=0, local_rank=0, world_size=1, autocast_dtype=None)


def setup(preset: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    cfg = load_config(preset, [])
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data.tokenizer.vocab_size)
    module = PerSampleLoss(model, fused=False, autocast_dtype=None)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
    for p in module.parameters():  # one step: AdamW's moments exist, as in a real checkpoint
        p.grad = torch.randn_like(p) * 1e-3
    opt.step()
    return module, opt


def old_save(
    run: Path, step: int, module: torch.nn.Module, opt: torch.optim.Optimizer, state: dict
) -> None:
    """The writer before manifests (git 834aaf2): the same files and fsyncs, no hashing."""
    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    sd = {
        k.removeprefix(MODEL_PREFIX): v
        for k, v in get_model_state_dict(module, options=full).items()
    }
    osd = get_optimizer_state_dict(module, opt, options=full)
    tmp = run / "checkpoints" / f".tmp-step_{step:08d}"
    tmp.mkdir(parents=True)
    save_file(_dedupe(sd), str(tmp / "model.safetensors"))
    torch.save(osd, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    save_file({"cpu": torch.get_rng_state()}, str(tmp / "rng_rank0.safetensors"))
    for f in tmp.iterdir():
        with open(f, "rb+") as h:
            os.fsync(h.fileno())
    (tmp / "COMPLETE").write_text(f"{step}\n")
    os.replace(tmp, run / "checkpoints" / f"step_{step:08d}")


def old_load(ckpt: Path, module: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    """load_checkpoint without the manifest check (what it did before)."""
    real = checkpoint._verify
    checkpoint._verify = lambda *a: None
    try:
        load_checkpoint(ckpt, module, opt, RT)
    finally:
        checkpoint._verify = real


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    module, opt = setup(args.preset)
    state = {"step": 1, "tokens": 0, "loader": {}, "reweighter": {}}
    size = sum(p.numel() for p in module.parameters()) * 4 * 3 / 1e6
    save_ratio, load_ratio, times = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            ours, old = Path(tmp) / f"ours{r}", Path(tmp) / f"old{r}"
            t_old = timed(lambda: old_save(old, 1, module, opt, state))  # noqa: B023
            t_new = timed(lambda: save_checkpoint(ours, 1, module, opt, state, RT, keep=2))  # noqa: B023
            ckpt = ours / "checkpoints" / "step_00000001"
            l_old = timed(lambda: old_load(ckpt, module, opt))  # noqa: B023
            l_new = timed(lambda: load_checkpoint(ckpt, module, opt, RT))  # noqa: B023
            save_ratio.append(t_new / t_old)
            load_ratio.append(l_new / l_old)
            times.append((t_old, t_new, l_old, l_new))
            shutil.rmtree(ours)
            shutil.rmtree(old)
    med = [statistics.median(t[i] for t in times) for i in range(4)]
    print(f"preset {args.preset}: model + AdamW state {size:.0f} MB, {args.rounds} rounds")
    print(
        f"save: {med[0] * 1e3:.0f} ms before -> {med[1] * 1e3:.0f} ms with hashes + manifest + "
        f"finiteness; ratio {statistics.median(save_ratio):.2f} "
        f"(range {min(save_ratio):.2f}-{max(save_ratio):.2f})"
    )
    print(
        f"load: {med[2] * 1e3:.0f} ms without the check -> {med[3] * 1e3:.0f} ms with every "
        f"hash checked; ratio {statistics.median(load_ratio):.2f} "
        f"(range {min(load_ratio):.2f}-{max(load_ratio):.2f})"
    )


if __name__ == "__main__":
    main()
