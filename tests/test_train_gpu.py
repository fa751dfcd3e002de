"""GPU-only: bf16 autocast, torch.compile and FSDP2 in the real trainer."""

from __future__ import annotations

import os
import subprocess

import pytest
import torch
from train_utils import TINY_OVERRIDES, check_steps_for_syncs, torchrun_train_cmd

from lossreweight.rundir import read_metrics
from lossreweight.train import load_config, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["train.compile=true"],
        ["train.loss_path=fused", "reweight.scope=step", "train.grad_accum=2"],
    ],
)
def test_bf16_training_on_cuda(tmp_path, extra):
    cfg = load_config("tiny", [*TINY_OVERRIDES, "train.max_steps=20", "train.device=cuda", *extra])
    result = train(cfg, tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    assert result.steps == 20 and all(r["train/skipped"] is False for r in rows)
    assert rows[-1]["train/loss"] < rows[0]["train/loss"]
    assert "train/mfu" in rows[-1] or torch.cuda.get_device_name()  # mfu only for known GPUs


def test_fsdp2_single_gpu_matches_plain(tmp_path):
    """fully_shard on one rank must give the same losses as the unsharded model."""
    base = [*TINY_OVERRIDES, "train.device=cuda", "train.precision=fp32"]
    train(load_config("tiny", base), tmp_path / "plain")
    cmd = torchrun_train_cmd(tmp_path / "fsdp", *base, "train.fsdp=true", nproc=1)
    proc = subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = read_metrics(tmp_path / "plain"), read_metrics(tmp_path / "fsdp")
    for x, y in zip(a, b, strict=True):
        assert y["train/loss"] == pytest.approx(x["train/loss"], rel=1e-4)


@pytest.mark.parametrize(
    "extra",
    [
        ["reweight.strategy=linupper", "train.grad_accum=2"],
        ["reweight.strategy=quadratic", "reweight.scope=step", "train.loss_path=fused"],
    ],
)
def test_training_steps_never_synchronise(tmp_path, monkeypatch, extra):
    """Under torch.cuda.set_sync_debug_mode("error") every step of the loop runs (logging steps
    included) but for the evaluation and the checkpoint save of the last step."""
    steps = check_steps_for_syncs(
        monkeypatch,
        lambda: torch.cuda.set_sync_debug_mode("error"),
        lambda: torch.cuda.set_sync_debug_mode(0),
    )
    cfg = load_config(
        "tiny",
        [
            *TINY_OVERRIDES,
            "train.device=cuda",
            "train.max_steps=8",
            "log.every=2",
            "eval.every=0",
            "checkpoint.every=0",
            *extra,
        ],
    )
    try:
        train(cfg, tmp_path / "run")
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert steps == list(range(8))
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [2, 4, 6, 8] and not any(r["train/skipped"] for r in rows)
