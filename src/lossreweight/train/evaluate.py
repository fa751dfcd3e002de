"""Evaluation on validation data, in one place: the per-domain validation loss of a model
(`evaluate`), the trainer's `Evaluator` (its cadence), and a finished or interrupted run
evaluated from its directory alone (`open_run`: one checkpoint, or each of several with the
data prepared once). Results are named by lossreweight.metric_names (`eval/loss`,
`eval/<domain>/loss`, ...), the names final.json, metrics.jsonl and the curves keep."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from lossreweight.config import RunConfig, validate_config
from lossreweight.data import prepare_data
from lossreweight.data.shards import check_shards
from lossreweight.errors import ConfigError
from lossreweight.metric_names import eval_record
from lossreweight.model import load_run_model
from lossreweight.rundir import (
    RESOLVED_CONFIG,
    check_same_data,
    data_fingerprint,
    read_run_config,
    require_checkpoint,
)
from lossreweight.train.checkpoint import read_state
from lossreweight.train.loss_module import PerSampleLoss
from lossreweight.train.runtime import Runtime, setup_runtime

_DEVICE = re.compile(r"auto|cpu|cuda(?::\d+)?")


@torch.no_grad()
def evaluate(
    loss_module: torch.nn.Module,
    batches: list[dict[str, torch.Tensor]],
    domains: list[str],
    rt: Runtime,
) -> dict[str, Any]:
    """Each rank evaluates its own slice of the fixed validation set; sums are all-reduced.

    `loss_module(input_ids)` returns per-sample mean next-token losses (a `PerSampleLoss`,
    possibly wrapped by DDP/FSDP); every position but the first is a target.
    """
    was_training = loss_module.training
    loss_module.eval()
    d = len(domains)
    loss_sum = torch.zeros(d, dtype=torch.float64, device=rt.device)
    tokens = torch.zeros(d, dtype=torch.float64, device=rt.device)
    count = len(batches)
    if rt.distributed:
        # FSDP needs every rank in every forward: ranks with fewer batches run the first again
        # and discard it.
        most = torch.tensor([count], device=rt.device)
        dist.all_reduce(most, op=dist.ReduceOp.MAX)
        count = int(most.item())
    for i in range(count):
        if i >= len(batches):
            if batches:
                loss_module(batches[0]["input_ids"].to(rt.device))
            continue
        batch = batches[i]
        ids = batch["input_ids"].to(rt.device, non_blocking=True)
        dom = batch["domain_ids"].to(rt.device, non_blocking=True)
        losses = loss_module(ids)
        n = torch.full_like(losses, ids.shape[1] - 1)
        ok = torch.isfinite(losses)
        loss_sum.index_add_(0, dom[ok], (losses[ok] * n[ok]).double())
        tokens.index_add_(0, dom[ok], n[ok].double())
    if rt.distributed:
        dist.all_reduce(loss_sum)
        dist.all_reduce(tokens)
    if was_training:
        loss_module.train()
    per = (loss_sum / tokens.clamp(min=1)).tolist()
    tok = tokens.tolist()
    by_domain = {name: per[i] for i, name in enumerate(domains) if tok[i] > 0}
    total_tokens = sum(tok)
    return eval_record(by_domain, float(loss_sum.sum()) / max(total_tokens, 1.0), total_tokens)


class Evaluator:
    """The trainer's evaluator: this rank's slice of the fixed validation set, evaluated every
    `every` steps (0: only at the end) and at the last step."""

    def __init__(
        self,
        loss_module: torch.nn.Module,
        batches: list[dict[str, torch.Tensor]],
        domains: list[str],
        rt: Runtime,
        *,
        every: int,
    ) -> None:
        self.loss_module, self.batches, self.domains, self.rt = loss_module, batches, domains, rt
        self.every = every
        self.last: dict[str, Any] = {}  # the latest result

    def due(self, step: int, *, last: bool = False) -> bool:
        return last or bool(self.every and step % self.every == 0)

    def run(self) -> dict[str, Any]:
        """Collective under torch.distributed. Keeps and returns evaluate()'s result."""
        self.last = evaluate(self.loss_module, self.batches, self.domains, self.rt)
        return self.last


# -- a run evaluated from its directory alone -----------------------------------------------
def validated_run_config(run_dir: str | Path) -> RunConfig:
    """A run's resolved config, validated; one line when the directory holds no run."""
    return validate_config(read_run_config(run_dir), where=str(Path(run_dir) / RESOLVED_CONFIG))


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
    cfg = validated_run_config(run_dir)
    require_checkpoint(run_dir)  # fail before the (possibly slow) data preparation
    dev = resolve_device(cfg.train.device, device)
    rt = setup_runtime(cfg.train.model_copy(update={"device": dev.type}))
    if dev.index is not None:  # setup_runtime picks cuda:LOCAL_RANK; honour an explicit index
        torch.cuda.set_device(dev)
        rt = dataclasses.replace(rt, device=dev)
    data = prepare_data(cfg.data, None, progress=False)
    # The scores must be about the data the run trained on: the validation shards' bytes
    # against their checksums, then the fingerprint against the one train saved.
    val_only = {**data.index, "splits": {"train": {}, "val": data.index["splits"]["val"]}}
    check_shards(data.root, val_only, full=True)
    check_same_data(run_dir, data_fingerprint(data.index, data.tokenizer_dir), doing="evaluate it")
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
