"""The Hugging Face Trainer's TensorBoard under the metric vocabulary (lossreweight.metric_names).

HF's TensorBoard callback prefixes every key that does not start with `eval_` by `train/`:
it writes `train/learning_rate`, `train/reweight/ess_fraction` and `eval/code_loss` where the
pipeline and the Lightning mixin write `train/lr`, `reweight/ess_fraction` and
`eval/code/loss`. `name_tensorboard` swaps that callback for one that writes the vocabulary's
names at the same step (optimizer steps done), so runs of the three paths overlay in one
TensorBoard. The Trainer's `log_history`, console and other loggers keep HF's keys.
"""

from __future__ import annotations

from typing import Any

from transformers import Trainer
from transformers.integrations import TensorBoardCallback

from lossreweight.metric_names import from_hf


class NamedTensorBoardCallback(TensorBoardCallback):
    """HF's TensorBoard callback (the `args` text, the writer, its folder) writing the
    vocabulary's names; per-domain evaluation losses are known by the trainer's
    `eval_dataset` dict keys."""

    def __init__(self, trainer: Trainer, tb_writer: Any = None) -> None:
        super().__init__(tb_writer=tb_writer)
        self._trainer = trainer

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        if self.tb_writer is None:
            self._init_summary_writer(args)
        if self.tb_writer is None:
            return
        data = self._trainer.eval_dataset
        domains = [str(k) for k in data] if isinstance(data, dict) else []
        for key, value in from_hf(logs or {}, domains).items():
            if isinstance(value, bool | int | float):
                self.tb_writer.add_scalar(key, value, state.global_step)
            elif isinstance(value, str):
                self.tb_writer.add_text(key, value, state.global_step)
        self.tb_writer.flush()


def name_tensorboard(trainer: Trainer) -> None:
    """Replace `trainer`'s TensorBoard callback (`report_to` tensorboard), in place, by
    `NamedTensorBoardCallback`; nothing when it reports elsewhere."""
    callbacks = trainer.callback_handler.callbacks
    for i, cb in enumerate(callbacks):
        if type(cb) is TensorBoardCallback:
            callbacks[i] = NamedTensorBoardCallback(trainer, tb_writer=cb.tb_writer)
