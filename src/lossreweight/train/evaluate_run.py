"""Evaluate a finished (or interrupted) run from its directory alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lossreweight.data import prepare_data
from lossreweight.errors import CheckpointError
from lossreweight.model import load_run_model
from lossreweight.model.run_dir import RESOLVED_CONFIG
from lossreweight.train.checkpoint import read_state
from lossreweight.train.config import validate_config
from lossreweight.train.evaluate import evaluate
from lossreweight.train.files import read_json_object
from lossreweight.train.loss_module import PerSampleLoss
from lossreweight.train.runtime import setup_runtime


def evaluate_run(run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    cfg_file = run_dir / RESOLVED_CONFIG
    if not cfg_file.is_file():
        raise CheckpointError(f"{run_dir} is not a run directory (no {RESOLVED_CONFIG}); give the --out of `lossreweight train`")
    saved = read_json_object(cfg_file, what="a run config", fix="the run directory is damaged", error=CheckpointError)
    cfg = validate_config(saved, where=str(cfg_file))
    rt = setup_runtime(cfg.train)
    model, ckpt = load_run_model(run_dir)
    state = read_state(ckpt)
    data = prepare_data(cfg.data, None, progress=False)
    module = PerSampleLoss(model.to(rt.device), fused=False, autocast_dtype=rt.autocast_dtype)
    batches = data.val_batches(cfg.eval.batch_size, max_sequences_per_domain=cfg.eval.max_sequences_per_domain)
    with torch.no_grad():
        result = evaluate(module, batches, data.domains, rt)
    return {"checkpoint": str(ckpt), "step": state["step"], **result}
