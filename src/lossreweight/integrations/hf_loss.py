"""`ReweightedLossFunc`: reweighting through `Trainer(compute_loss_func=...)`, for users who keep
their own Trainer subclass.

    loss_func = ReweightedLossFunc(Reweighter("linupper", temperature=0.5))
    trainer = MyTrainer(model=model, args=args, train_dataset=ds)
    loss_func.attach(trainer)   # sets trainer.compute_loss_func and registers the callback
    trainer.train()

The hook only receives `(outputs, labels, num_items_in_batch)`, so the object is also a
`TrainerCallback`: it learns the optimizer step (for warm-up and the temperature schedule),
the accumulation window and the arguments from the Trainer's callback events, and adds the
statistics to the training logs, with the same names as `ReweightingTrainer`: `loss` becomes
the unweighted mean per-sample loss, `weighted_loss` what was backpropagated, and with a dict
`eval_dataset` `eval_domain_avg_loss` / `eval_worst_domain_loss` follow the per-domain
`eval_<name>_loss`. Limits: `scope="micro"` only (the `step` scope needs every
micro-batch before any backward: use `ReweightingTrainer`), and no domain ids (the hook never
sees the batch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from lossreweight.integrations._stats import StatsAccumulator, flatten, logged_losses
from lossreweight.integrations.hf_eval import domain_summary, eval_batch_loss
from lossreweight.integrations.hf_outputs import logits_of
from lossreweight.integrations.hf_tensorboard import name_tensorboard
from lossreweight.losses import per_sample_loss
from lossreweight.reweighting import Reweighter, combine_stats, stats_to_python


class ReweightedLossFunc(TrainerCallback):
    """A `compute_loss_func` for causal LMs that returns the reweighted loss (SPEC 4).

    The Trainer treats a `compute_loss_func` loss as already scaled for gradient accumulation
    and, with `average_tokens_across_devices` (the default) and a token count, multiplies it
    by the number of processes. So a micro-batch returns `W * sum_i w_i l_i / A` divided by
    whatever the Trainer multiplies by: after DDP averaging the gradient is
    sum_i w_i grad l_i per micro-batch, / A per window (A = micro-batches in the window).
    """

    def __init__(
        self,
        reweighter: Reweighter,
        *,
        shift: bool = True,
        stats_prefix: str = "reweight/",
        domain_names: Sequence[str] | None = None,
    ) -> None:
        if reweighter.scope != "micro":
            raise ValueError(
                "ReweightedLossFunc supports scope='micro' only: scope='step' needs every "
                "micro-batch's "
                "loss before the first backward; use "
                "lossreweight.integrations.hf_trainer.ReweightingTrainer"
            )
        self.reweighter = reweighter
        self.shift = shift
        self.stats_prefix = stats_prefix
        self.domain_names = domain_names
        self._args: Any = None
        self._batches_per_epoch: int | None = None
        self._step = 0
        self._window = 1
        self._stats = StatsAccumulator()  # since the last training log
        self._run: dict[str, torch.Tensor] = {}  # since training began
        self._trainer: Trainer | None = None
        self._eval_seen: dict[str, float] = {}

    def attach(self, trainer: Trainer) -> Trainer:
        """Use this as `trainer`'s loss, and register the callback ahead of the reporting
        callbacks (TensorBoard, W&B) so they see the statistics."""
        if trainer.args.n_gpu > 1:
            raise ValueError(
                "ReweightedLossFunc needs one device per process (DDP), not DataParallel"
            )
        trainer.compute_loss_func = self
        self._trainer = trainer
        self._args = trainer.args
        callbacks = trainer.callback_handler.callbacks
        if self not in callbacks:
            callbacks.insert(0, self)
        name_tensorboard(trainer)  # TensorBoard under the pipeline's metric names
        return trainer

    # -- the loss ---------------------------------------------------------------------------
    def _trainer_multiplier(self, num_items_in_batch: Any) -> int:
        # Mirrors Trainer.compute_loss: with average_tokens_across_devices and a token count
        # it multiplies a compute_loss_func's loss by the number of processes.
        args = self._args
        if getattr(args, "average_tokens_across_devices", False) and num_items_in_batch is not None:
            return max(1, int(args.world_size))
        return 1

    def __call__(
        self, outputs: Any, labels: torch.Tensor | None, num_items_in_batch: Any = None
    ) -> torch.Tensor:
        if labels is None:
            raise ValueError("ReweightedLossFunc needs 'labels' in the batch")
        losses, _ = per_sample_loss(logits_of(outputs), labels, shift=self.shift)
        if not torch.is_grad_enabled():
            # Evaluation / prediction: the unweighted mean of the per-sample losses.
            loss = eval_batch_loss(losses)
            return (
                loss / self._trainer_multiplier(num_items_in_batch)
                if self._args is not None
                else loss
            )
        if self._args is None:
            raise RuntimeError(
                "ReweightedLossFunc was not registered as a callback: call "
                "loss_func.attach(trainer) "
                "before trainer.train()"
            )
        out = self.reweighter.reweight(losses, step=self._step, accumulation_steps=self._window)
        self._stats.add(out.stats)
        return out.loss / self._trainer_multiplier(num_items_in_batch)

    # -- callback events --------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._args = args
        self._run = {}
        loader = kwargs.get("train_dataloader")
        try:
            self._batches_per_epoch = len(loader) if loader is not None else None
        except TypeError:  # an iterable dataset: every window is full
            self._batches_per_epoch = None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        ga = args.gradient_accumulation_steps
        self._step = state.global_step
        self._window = ga
        n = self._batches_per_epoch
        if n:
            # The Trainer runs the last window of an epoch with the leftover micro-batches.
            per_epoch = math.ceil(n / ga)
            if state.global_step % per_epoch == per_epoch - 1:
                self._window = n - (per_epoch - 1) * ga

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any
    ) -> None:
        if logs is None:
            return
        update: dict[str, Any] = {}
        if "loss" in logs and self._stats:
            stats = self._stats.pop_tensors()
            self._run = combine_stats([self._run, stats]) if self._run else stats
            py = stats_to_python({**stats, "_loss": logged_losses(stats)["loss"]})
            update = {
                "loss": py.pop("_loss"),
                "weighted_loss": logs["loss"],
                **flatten(py, self.stats_prefix, self.domain_names),
            }
        elif "train_loss" in logs and (self._run or self._stats):
            parts = [p for p in (self._run, self._stats.pop_tensors()) if p]
            self._run = combine_stats(parts)
            update = {
                "train_loss": stats_to_python(logged_losses(self._run))["loss"],
                "train_weighted_loss": logs["train_loss"],
            }
        if not update:
            return
        # Trainer.log appended a copy of `logs` to the history just before this event.
        last = state.log_history[-1] if state.log_history else None
        if (
            last is not None
            and last.get("step") == state.global_step
            and all(k in last for k in logs)
        ):
            last.update(update)
        logs.update(update)

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict | None = None, **kwargs: Any
    ) -> None:
        # The Trainer evaluates a dict eval_dataset one domain at a time; after the last one,
        # add the summary to its metrics (which the Trainer merges and uses for the best
        # model) and log it.
        trainer = self._trainer
        datasets = getattr(trainer, "eval_dataset", None)
        if trainer is None or not isinstance(datasets, dict) or not metrics:
            return
        names = [n for n in datasets if f"eval_{n}_loss" in metrics]
        for n in names:
            self._eval_seen[f"eval_{n}_loss"] = metrics[f"eval_{n}_loss"]
        summary = domain_summary(self._eval_seen, list(datasets))
        if summary and names:
            self._eval_seen = {}
            metrics.update(summary)
            trainer.log(dict(summary))
