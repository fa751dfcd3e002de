"""`ReweightingTrainer`: a `transformers.Trainer` that trains on the reweighted loss (SPEC 4).

How the loss is scaled (see docs/integrations.md for the plain Trainer's own rules):
each micro-batch returns `W * sum_i w_i l_i` from `compute_loss` (W = data-parallel world
size, weights summing to 1 over the scope), and we declare it *not* scaled for gradient
accumulation, so `Trainer.training_step` divides it by the number of micro-batches in the
window. DDP then averages gradients over ranks, which gives sum_i w_i grad l_i / A per
window: SPEC's `micro` scope. With `scope="step"` the weights sum to 1 over the whole window,
so each micro-batch's loss is multiplied by the divisor the Trainer will apply.

Logged names: `loss` is the unweighted mean per-sample loss over the logging interval (the
same quantity as `eval_loss`, comparable across strategies), `weighted_loss` what was
backpropagated, `reweight/<statistic>` the SPEC 5 statistics; with a dict `eval_dataset`,
`eval_<name>_loss` per domain plus `eval_domain_avg_loss` and `eval_worst_domain_loss`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
from transformers import Trainer
from transformers.trainer_utils import TrainOutput

from lossreweight.integrations._stats import StatsAccumulator, flatten, logged_losses
from lossreweight.integrations.hf_eval import domain_summary, eval_batch_loss
from lossreweight.integrations.hf_outputs import causal_lm_losses
from lossreweight.integrations.hf_tensorboard import name_tensorboard
from lossreweight.reweighting import Reweighter, combine_stats, stats_to_python


class ReweightingTrainer(Trainer):
    """A `transformers.Trainer` for causal LMs that backpropagates the reweighted loss.

    Args:
        reweighter: the `Reweighter` (strategy, temperature, scope, ...).
        domain_key: batch key holding one integer domain id per sample (kept through
            `remove_unused_columns`, given to the reweighter for per-domain statistics, never
            to the model); None to disable.
        domain_names: names for the per-domain statistics (default: the ids).
        loss_from: "logits" (per-sample CE from the model's logits) or "hidden_states" (fused
            projection + CE from the last hidden state; the model keeps 1 logit position).
        stats_prefix: prefix of the statistics added to the Trainer's training logs.
        All other arguments go to `transformers.Trainer`.
    """

    def __init__(
        self,
        *args: Any,
        reweighter: Reweighter,
        domain_key: str | None = "domain_ids",
        domain_names: Sequence[str] | None = None,
        loss_from: Literal["logits", "hidden_states"] = "logits",
        stats_prefix: str = "reweight/",
        **kwargs: Any,
    ) -> None:
        if not isinstance(reweighter, Reweighter):
            raise TypeError(
                f"reweighter must be a lossreweight.Reweighter, got {type(reweighter).__name__}"
            )
        if kwargs.get("compute_loss_func") is not None:
            raise ValueError(
                "ReweightingTrainer computes the loss itself: do not pass compute_loss_func "
                "(use lossreweight.integrations.hf_loss.ReweightedLossFunc with a plain Trainer "
                "instead)"
            )
        if loss_from not in ("logits", "hidden_states"):
            raise ValueError(f"loss_from must be 'logits' or 'hidden_states', got {loss_from!r}")
        # Set before Trainer.__init__, which may already look at the signature columns.
        self.reweighter = reweighter
        self.domain_key = domain_key
        self.domain_names = list(domain_names) if domain_names is not None else None
        if self.domain_names is not None:
            if reweighter.num_domains == 0:
                reweighter.num_domains = len(self.domain_names)  # enables the per-domain statistics
            elif reweighter.num_domains != len(self.domain_names):
                raise ValueError(
                    f"{len(self.domain_names)} domain_names but the reweighter has "
                    f"num_domains={reweighter.num_domains}"
                )
        self.loss_from = loss_from
        self.stats_prefix = stats_prefix
        self._rw_stats = StatsAccumulator()  # since the last training log
        self._rw_run: dict[str, torch.Tensor] = {}  # since train() began, folded at each log
        self._rw_window: deque[torch.Tensor] = deque()
        super().__init__(*args, **kwargs)
        if self.args.label_smoothing_factor != 0:
            raise ValueError("ReweightingTrainer does not support label_smoothing_factor != 0")
        if self.args.n_gpu > 1:
            raise ValueError(
                "ReweightingTrainer needs one device per process (DDP/FSDP via torchrun or "
                "accelerate "
                "launch); torch.nn.DataParallel over several GPUs in one process is not supported"
            )
        # Our loss is a per-micro-batch value: the Trainer divides it by the window's
        # micro-batch count. `model_accepts_loss_kwargs=False` says the same to Trainers older
        # than `loss_is_scaled_for_ga` (transformers < 5.19) and skips the token count (and its
        # cross-rank gather) that we do not use.
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False
        name_tensorboard(self)

    # -- columns ----------------------------------------------------------------------------
    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self.domain_key and self.domain_key not in self._signature_columns:
            self._signature_columns.append(self.domain_key)

    # -- loss -------------------------------------------------------------------------------
    def _losses(
        self, model: torch.nn.Module, inputs: dict[str, Any], loss_from: str | None = None
    ) -> tuple[torch.Tensor, Any]:
        unwrapped = self.accelerator.unwrap_model(model)
        return causal_lm_losses(model, unwrapped, inputs, loss_from=loss_from or self.loss_from)

    def _divisor(self) -> int:
        # What Trainer.training_step divides our loss by (len of the prefetched window).
        return int(
            getattr(
                self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps
            )
        )

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        inputs = dict(inputs)
        domain_ids = inputs.pop(self.domain_key, None) if self.domain_key else None
        if domain_ids is not None:
            domain_ids = domain_ids.reshape(-1)
        if not model.training:
            # Evaluation and prediction: the unweighted mean of per-sample mean losses, the
            # quantity the logged training `loss` is. compute_metrics needs the full logits.
            loss_from = "logits" if self.compute_metrics is not None else self.loss_from
            losses, outputs = self._losses(model, inputs, loss_from)
            loss = eval_batch_loss(losses)
            return (loss, outputs) if return_outputs else loss
        losses, outputs = self._losses(model, inputs)
        if self.reweighter.scope == "step":
            if not self._rw_window:
                raise RuntimeError(
                    "scope='step' needs the accumulation window prefetched by "
                    "Trainer.get_batch_samples "
                    "(a recent transformers; tested with 5.23): no weights are left for this "
                    "micro-batch"
                )
            w = self._rw_window.popleft()
            loss = self.reweighter.weighted_loss(losses, weights=w) * self._divisor()
        else:
            out = self.reweighter.reweight(
                losses, step=self.state.global_step, domain_ids=domain_ids
            )
            loss = out.loss
            self._rw_stats.add(out.stats)
        return (loss, outputs) if return_outputs else loss

    # -- scope="step": weights over the whole window before any backward --------------------
    def get_batch_samples(
        self, epoch_iterator: Iterator, num_batches: int, *args: Any, **kwargs: Any
    ) -> tuple[list, Any]:
        batch_samples, num_items = super().get_batch_samples(
            epoch_iterator, num_batches, *args, **kwargs
        )
        if self.reweighter.scope == "step" and batch_samples:
            self._rw_window = deque(self._window_weights(batch_samples))
        return batch_samples, num_items

    def _window_weights(self, batch_samples: list) -> list[torch.Tensor]:
        """One no-grad forward over the window (about +1/3 of the step's compute)."""
        model = self.model_wrapped
        model.train()  # same mode as the weighted forward that follows
        parts: list[torch.Tensor] = []
        doms: list[torch.Tensor | None] = []
        with torch.no_grad(), self.compute_loss_context_manager():
            for batch in batch_samples:
                inputs = dict(self._prepare_inputs(batch))
                doms.append(inputs.pop(self.domain_key, None) if self.domain_key else None)
                losses, _ = self._losses(model, inputs)
                parts.append(losses.detach().to(torch.float32))
        domain_ids = None
        if all(d is not None for d in doms):
            domain_ids = torch.cat([d.reshape(-1) for d in doms if d is not None])
        weights, stats = self.reweighter.weights_and_stats(
            torch.cat(parts), step=self.state.global_step, domain_ids=domain_ids
        )
        self._rw_stats.add(stats)
        return list(torch.split(weights, [p.numel() for p in parts]))

    # -- logging ----------------------------------------------------------------------------
    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs and self._rw_stats:
            # A training log: HF's `loss` is what was backpropagated (the weighted loss). Log
            # the unweighted mean as `loss` instead, comparable with eval_loss and across
            # strategies, the weighted one beside it, and the statistics (one host copy).
            stats = self._fold_interval()
            py = stats_to_python({**stats, "_loss": logged_losses(stats)["loss"]})
            logs["weighted_loss"] = logs["loss"]
            logs["loss"] = py.pop("_loss")
            logs.update(flatten(py, self.stats_prefix, self.domain_names))
        elif "train_loss" in logs and (self._rw_run or self._rw_stats):
            # The end of train(): the same swap over the whole run.
            self._fold_interval()
            logs["train_weighted_loss"] = logs["train_loss"]
            logs["train_loss"] = stats_to_python(logged_losses(self._rw_run))["loss"]
        super().log(logs, *args, **kwargs)

    def _fold_interval(self) -> dict[str, torch.Tensor]:
        stats = self._rw_stats.pop_tensors()
        self._rw_run = combine_stats([self._rw_run, stats]) if self._rw_run else stats
        return stats

    def train(self, *args: Any, **kwargs: Any) -> TrainOutput:
        self._rw_run = {}
        out = super().train(*args, **kwargs)
        # TrainOutput.training_loss is HF's weighted average; report the logged (unweighted) one.
        return TrainOutput(
            out.global_step, out.metrics.get("train_loss", out.training_loss), out.metrics
        )

    # -- evaluation over domains ------------------------------------------------------------
    def evaluate(
        self,
        eval_dataset: Any = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """The Trainer's evaluation; with a dict of datasets (one per domain), also
        `eval_domain_avg_loss` and `eval_worst_domain_loss` once every domain is done."""
        datasets = eval_dataset if eval_dataset is not None else self.eval_dataset
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if isinstance(datasets, dict):
            summary = domain_summary(metrics, list(datasets), metric_key_prefix)
            if summary:
                metrics.update(summary)
                self.log(dict(summary))
        return metrics
