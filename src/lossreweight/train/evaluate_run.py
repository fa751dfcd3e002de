"""Evaluate a finished (or interrupted) run from its directory alone: per-domain validation
loss of one checkpoint, or of each of several checkpoints with the data prepared once."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lossreweight.config import RunConfig, validate_config
from lossreweight.data import prepare_data
from lossreweight.errors import CheckpointError, ConfigError
from lossreweight.model import load_run_model
from lossreweight.model.run_dir import CHECKPOINTS_DIR, COMPLETE_MARKER, RESOLVED_CONFIG
from lossreweight.train.checkpoint import read_state
from lossreweight.train.evaluate import evaluate
from lossreweight.train.files import read_json_object
from lossreweight.train.loss_module import PerSampleLoss
from lossreweight.train.runtime import Runtime, setup_runtime

_DEVICE = re.compile(r"auto|cpu|cuda(?::\d+)?")
_STEP_DIR = re.compile(r"step_(\d+)")


def read_run_config(run_dir: Path) -> RunConfig:
    cfg_file = run_dir / RESOLVED_CONFIG
    if not cfg_file.is_file():
        raise CheckpointError(
            f"{run_dir} is not a run directory (no {RESOLVED_CONFIG}); "
            "give the --out of `lossreweight train`"
        )
    saved = read_json_object(
        cfg_file, what="a run config", fix="the run directory is damaged", error=CheckpointError
    )
    return validate_config(saved, where=str(cfg_file))


def resolve_device(configured: str, device: str | None) -> torch.device:
    """`device` (auto, cpu, cuda, cuda:N), else the run's train.device; auto means CUDA when
    one is visible."""
    want = device or configured
    if not _DEVICE.fullmatch(want):
        raise ConfigError(f"--device {want!r} is not one of auto, cpu, cuda, cuda:N")
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {want} asked for but no CUDA device is visible; pass --device cpu"
        )
    dev = torch.device(want)
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            f"--device {want}: only {torch.cuda.device_count()} CUDA devices are visible"
        )
    return dev


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """Every complete checkpoint of a run (a step_XXXXXXXX folder with its COMPLETE marker),
    oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), d)
        for d in root.iterdir()
        if (m := _STEP_DIR.fullmatch(d.name)) and (d / COMPLETE_MARKER).is_file()
    ]
    return [d for _, d in sorted(found)]


def require_checkpoint(run_dir: Path) -> None:
    if not complete_checkpoints(run_dir):
        raise CheckpointError(
            f"{run_dir} has no complete checkpoint ({CHECKPOINTS_DIR}/step_XXXXXXXX with a "
            f"{COMPLETE_MARKER} file); train until one is saved, or check the path"
        )


@dataclass
class RunEvaluator:
    """A run's validation set, prepared once, and the runtime to evaluate its checkpoints on."""

    run_dir: Path
    cfg: RunConfig
    rt: Runtime
    domains: list[str]
    batches: list[dict[str, torch.Tensor]]

    def evaluate(self, checkpoint: Path | None = None) -> dict[str, Any]:
        """Per-domain validation loss of `checkpoint` (default: the newest complete one)."""
        model, ckpt = load_run_model(self.run_dir, checkpoint)
        state = read_state(ckpt)
        module = PerSampleLoss(
            model.to(self.rt.device), fused=False, autocast_dtype=self.rt.autocast_dtype
        )
        with torch.no_grad():
            result = evaluate(module, self.batches, self.domains, self.rt)
        return {"checkpoint": str(ckpt), "step": state["step"], "tokens": state["tokens"], **result}


def open_run(run_dir: str | Path, device: str | None = None) -> RunEvaluator:
    """Read a run's config and prepare its validation data (from the local cache, or by
    re-tokenizing its local sources; nothing is fetched)."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    require_checkpoint(run_dir)  # fail before the (possibly slow) data preparation
    dev = resolve_device(cfg.train.device, device)
    rt = setup_runtime(cfg.train.model_copy(update={"device": dev.type}))
    if dev.index is not None:  # setup_runtime picks cuda:LOCAL_RANK; honour an explicit index
        torch.cuda.set_device(dev)
        rt = dataclasses.replace(rt, device=dev)
    data = prepare_data(cfg.data, None, progress=False)
    batches = data.val_batches(
        cfg.eval.batch_size, max_sequences_per_domain=cfg.eval.max_sequences_per_domain
    )
    return RunEvaluator(run_dir, cfg, rt, list(data.domains), batches)


def evaluate_run(
    run_dir: str | Path, checkpoint: str | Path | None = None, device: str | None = None
) -> dict[str, Any]:
    """Per-domain validation loss of one checkpoint of a run (default: its newest complete one):
    `checkpoint`, `step` and `evaluate()`'s keys (callers merge these into final.json)."""
    result = open_run(run_dir, device).evaluate(Path(checkpoint) if checkpoint else None)
    del result["tokens"]
    return result
