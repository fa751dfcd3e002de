"""Loss-based reweighting in a Lightning `training_step` (extra: `lossreweight[lightning]`).

    class LM(ReweightingMixin, L.LightningModule):
        reweight_domain_names = ["web", "code"]        # optional: names for per-domain statistics

        def __init__(self):
            super().__init__()
            self.model = ...
            self.reweighter = Reweighter("linupper", temperature=0.5, num_domains=2)

        def training_step(self, batch, batch_idx):
            logits = self.model(batch["input_ids"])
            doms = batch.get("domain_ids")
            return self.causal_lm_reweighted_loss(logits, batch["labels"], domain_ids=doms)

        def validation_step(self, batch, batch_idx, dataloader_idx=0):  # one loader per domain
            logits = self.model(batch["input_ids"])
            return self.causal_lm_eval_loss(logits, batch["labels"], dataloader_idx=dataloader_idx)

    trainer = L.Trainer(accumulate_grad_batches=2, ...)

Why the scale is right: `training_step` returns `W * sum_i w_i l_i` (weights summing to 1
over the micro-batch of all W ranks, gathered with torch.distributed, which Lightning's DDP
strategy initialises); Lightning's automatic optimisation divides it by
`accumulate_grad_batches` and DDP averages gradients over ranks, so one optimizer step
applies sum_i w_i grad l_i averaged over the window: SPEC's `micro` scope.

What is logged, once per optimizer step (in `on_before_optimizer_step`), over the whole
accumulation window with `combine_stats`: `train/loss` (the unweighted mean per-sample loss,
also on the progress bar), `train/weighted_loss` (what was backpropagated), `train/lr` and
`reweight/<statistic>` (per domain: `reweight/domain_weight_share/<name>`), at `step` = the
optimizer steps done (1 after the first), the names and axis of the pipeline and the HF adapter
(lossreweight.metric_names; docs/metrics.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

try:
    import lightning.pytorch as pl  # noqa: F401 - fails early, with the install hint
except ModuleNotFoundError as exc:
    if exc.name not in ("lightning", "lightning.pytorch"):
        raise  # Lightning is installed but one of its own imports failed: show that error
    try:  # the standalone `pytorch_lightning` package has the same API
        import pytorch_lightning as pl  # type: ignore[no-redef]  # noqa: F401
    except ModuleNotFoundError as exc2:
        if exc2.name != "pytorch_lightning":
            raise
        raise ImportError(
            "lossreweight.integrations.lightning needs Lightning: pip install "
            "'lossreweight[lightning]'"
        ) from exc

from lossreweight.integrations._stats import StatsAccumulator, flatten, logged_losses
from lossreweight.losses import per_sample_loss
from lossreweight.metric_names import (
    DOMAIN_AVG_LOSS,
    LOSS,
    LR,
    STEP,
    TRAIN_LOSS,
    WEIGHTED_LOSS,
    WORST_DOMAIN_LOSS,
    domain_loss_name,
)
from lossreweight.reweighting import Reweighter

__all__ = ["ReweightingMixin"]


class ReweightingMixin:
    """Mix into a `LightningModule` (before it in the bases) that sets `self.reweighter`.

    Class attributes: `reweight_domain_names` (names for the per-domain statistics; default
    the ids), `reweight_log` (False: log nothing), `reweight_prefix` ("reweight/"). If you
    override `on_before_optimizer_step`, call `super().on_before_optimizer_step(optimizer)`
    (or `self.log_reweighting()`) in it.
    """

    reweighter: Reweighter
    reweight_domain_names: Sequence[str] | None = None
    reweight_log: bool = True
    reweight_prefix: str = "reweight/"

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
        self._reweight_window().add(out.stats)
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

    # -- logging, once per optimizer step ---------------------------------------------------
    def _reweight_window(self) -> StatsAccumulator:
        acc = getattr(self, "_rw_window", None)
        if acc is None:
            acc = StatsAccumulator()
            self._rw_window = acc
        return acc

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        # Called once per optimizer step, after the window's last backward.
        super().on_before_optimizer_step(optimizer)  # type: ignore[misc]
        self.log_reweighting(optimizer)

    def log_reweighting(self, optimizer: Any = None) -> None:
        """Log the losses and statistics of the micro-batches since the last call (the
        accumulation window), combined with `combine_stats`, then start a new window.

        The values stay device tensors: Lightning turns them into numbers only on the steps
        its loggers write (`log_every_n_steps`), so there is no host synchronisation in
        between. They are the same on every rank (computed from the gathered scope).
        """
        acc = self._reweight_window()
        if not acc:
            return
        stats = acc.pop_tensors()
        if not self.reweight_log:
            return
        losses = logged_losses(stats)  # NaN for a window without a valid sample
        log = self.log  # type: ignore[attr-defined]
        log(
            TRAIN_LOSS,
            losses["loss"],
            on_step=True,
            on_epoch=False,
            prog_bar=True,
            batch_size=1,
        )
        metrics: dict[str, Any] = {WEIGHTED_LOSS: losses["weighted_loss"]}
        if optimizer is not None:
            metrics[LR] = float(optimizer.param_groups[0]["lr"])
        metrics.update(flatten(stats, self.reweight_prefix, self.reweight_domain_names))
        # The x axis of the pipeline and the HF Trainer: optimizer steps done, 1 after the first
        # (Lightning's own step here is the 0-based index of the step being taken). A logged
        # `step` is what Lightning's loggers use as the step of the record.
        metrics[STEP] = float(int(self.global_step) + 1)  # type: ignore[attr-defined]
        self.log_dict(metrics, on_step=True, on_epoch=False, prog_bar=False, batch_size=1)  # type: ignore[attr-defined]

    # -- per-domain evaluation (the HF adapter's, the Lightning way) ------------------------
    def causal_lm_eval_loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        *,
        dataloader_idx: int = 0,
        domain_ids: torch.Tensor | None = None,
        shift: bool = True,
    ) -> torch.Tensor:
        """In `validation_step`: per-sample cross-entropy, then `add_eval_losses`."""
        losses, _ = per_sample_loss(logits, labels, shift=shift)
        return self.add_eval_losses(losses, dataloader_idx=dataloader_idx, domain_ids=domain_ids)

    def add_eval_losses(
        self,
        losses: torch.Tensor,
        *,
        dataloader_idx: int = 0,
        domain_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Add per-sample validation losses to their domain's sums; returns their mean.

        The domain is `domain_ids` (one per sample; `reweight_domain_names` or the
        Reweighter's `num_domains` says how many) or else the validation dataloader's index
        (one dataloader per domain, as the HF adapter's dict `eval_dataset`). When the
        validation epoch ends, the mixin logs `eval/<domain>/loss` (the mean of per-sample
        losses), `eval/loss` over all samples, `eval/domain_avg_loss` and
        `eval/worst_domain_loss` (a NaN domain makes both NaN), summed over ranks first.
        Samples without a target (NaN loss) are left out. Nothing here waits for the device.
        """
        losses = losses.detach().reshape(-1).float()
        valid = torch.isfinite(losses)
        safe = torch.where(valid, losses, 0.0)
        sums = self._eval_sums()
        if domain_ids is None:
            add = torch.stack([safe.sum(), valid.sum().float()])
            sums[dataloader_idx] = sums.get(dataloader_idx, 0) + add
        else:
            n = len(self.reweight_domain_names or ()) or self.reweighter.num_domains
            if not n:
                raise ValueError(
                    "domain_ids need the number of domains: set reweight_domain_names or the "
                    "Reweighter's num_domains"
                )
            ids = domain_ids.reshape(-1).to(losses.device).long()
            per = torch.zeros(n, 2, device=losses.device)
            per[:, 0].index_add_(0, ids, safe)
            per[:, 1].index_add_(0, ids, valid.float())
            for d in range(n):
                sums[d] = sums.get(d, 0) + per[d]
        return safe.sum() / valid.sum().clamp(min=1)

    def _eval_sums(self) -> dict[int, torch.Tensor]:
        sums = getattr(self, "_rw_eval", None)
        if sums is None:
            sums = {}
            self._rw_eval = sums
        return sums

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()  # type: ignore[misc]
        self._rw_eval: dict[int, torch.Tensor] = {}  # a sanity check's sums do not carry over

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()  # type: ignore[misc]
        self.log_domain_eval()

    def log_domain_eval(self) -> dict[str, torch.Tensor]:
        """Log (and return) the per-domain validation losses gathered since the epoch began."""
        sums, self._rw_eval = self._eval_sums(), {}
        if not sums:
            return {}
        keys = sorted(sums)
        table = torch.stack([sums[k] for k in keys])  # [domains, (loss sum, samples)]
        strategy = getattr(getattr(self, "_trainer", None), "strategy", None)
        if strategy is not None:
            table = strategy.reduce(table, reduce_op="sum")  # every rank's samples
        per = table[:, 0] / table[:, 1]  # 0/0 = NaN: a domain without samples
        names = self.reweight_domain_names
        metrics = {
            domain_loss_name(names[k] if names and k < len(names) else str(k)): per[i]
            for i, k in enumerate(keys)
        }
        metrics[LOSS] = table[:, 0].sum() / table[:, 1].sum()
        metrics[DOMAIN_AVG_LOSS] = per.mean()
        metrics[WORST_DOMAIN_LOSS] = per.max()
        if self.reweight_log:
            # Lightning's step here is already the optimizer steps done: the pipeline's axis.
            logged = {**metrics, STEP: float(int(self.global_step))}  # type: ignore[attr-defined]
            self.log_dict(logged, on_step=False, on_epoch=True, batch_size=1)  # type: ignore[attr-defined]
        return metrics
