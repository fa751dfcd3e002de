"""Loss-based reweighting in a Lightning `training_step` (an optional extra: `lossreweight[lightning]`).

    class LM(ReweightingMixin, L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = ...
            self.reweighter = Reweighter("linupper", temperature=0.5)

        def training_step(self, batch, batch_idx):
            logits = self.model(batch["input_ids"])
            return self.causal_lm_reweighted_loss(logits, batch["labels"], domain_ids=batch.get("domain_ids"))

    trainer = L.Trainer(callbacks=[ReweightingStatsCallback()], accumulate_grad_batches=2, ...)

Why the scale is right: `training_step` returns `W * sum_i w_i l_i` (weights summing to 1
over the micro-batch of all W ranks, gathered with torch.distributed, which Lightning's DDP
strategy initialises); Lightning's automatic optimisation divides it by
`accumulate_grad_batches` and DDP averages gradients over ranks, so one optimizer step
applies sum_i w_i grad l_i averaged over the window: SPEC's `micro` scope.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

try:
    import lightning.pytorch as pl
except ImportError:  # the standalone `pytorch_lightning` package has the same API
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
    except ImportError as exc:
        raise ImportError(
            "lossreweight.integrations.lightning needs Lightning: pip install 'lossreweight[lightning]'"
        ) from exc

from lossreweight.losses import per_sample_loss
from lossreweight.reweighting import Reweighter

__all__ = ["ReweightingMixin", "ReweightingStatsCallback"]


class ReweightingMixin:
    """Mix into a `LightningModule` (before it in the bases) that sets `self.reweighter`."""

    reweighter: Reweighter

    def reweighted_loss(
        self, losses: torch.Tensor, *, domain_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The loss to return from `training_step`: W * sum_i w_i l_i for per-sample `losses`.

        Do not divide by `accumulate_grad_batches`: Lightning does. Under manual
        optimisation, divide by your number of accumulated micro-batches yourself.
        """
        rw = self.reweighter
        if rw.scope != "micro":
            # Lightning hands training_step one micro-batch at a time and runs its backward
            # right away, so whole-window weights cannot be computed in advance. Never fall
            # back silently: a larger batch with accumulate_grad_batches=1 gives step scope.
            raise ValueError(
                "the Lightning integration supports scope='micro' only; for whole-step weights use "
                "accumulate_grad_batches=1 with the whole step as one batch (micro == step then)"
            )
        step = int(self.global_step)  # type: ignore[attr-defined]
        if domain_ids is not None:
            domain_ids = domain_ids.reshape(-1)
        out = rw.reweight(losses, step=step, domain_ids=domain_ids)
        self._reweight_stats = out.stats  # read by ReweightingStatsCallback
        return out.loss

    def causal_lm_reweighted_loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        *,
        domain_ids: torch.Tensor | None = None,
        shift: bool = True,
    ) -> torch.Tensor:
        """Per-sample cross-entropy of a causal LM's logits, then `reweighted_loss`."""
        losses, _ = per_sample_loss(logits, labels, shift=shift)
        return self.reweighted_loss(losses, domain_ids=domain_ids)


class ReweightingStatsCallback(pl.Callback):
    """Logs `pl_module.reweighter.stats` through `LightningModule.log_dict` after each batch.

    The values stay device tensors: Lightning converts them to numbers only on the steps its
    loggers write (`log_every_n_steps`), so there is no host synchronisation in between. Each
    logged value is the last micro-batch's statistic (Lightning's `on_step` semantics).
    """

    def __init__(self, prefix: str = "reweight/", domain_names: Sequence[str] | None = None) -> None:
        self.prefix = prefix
        self.domain_names = list(domain_names) if domain_names is not None else None

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        stats = getattr(pl_module, "_reweight_stats", None)
        if not stats or not trainer.loggers:
            return
        metrics: dict[str, torch.Tensor] = {}
        for key, value in stats.items():
            if value.dim() == 0:
                metrics[self.prefix + key] = value
            else:
                for d in range(value.numel()):
                    names = self.domain_names
                    name = names[d] if names is not None and d < len(names) else str(d)
                    metrics[f"{self.prefix}{key}/{name}"] = value[d]
        # Identical on every rank (computed from the gathered scope): no sync_dist needed.
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, prog_bar=False, logger=True, batch_size=1)
