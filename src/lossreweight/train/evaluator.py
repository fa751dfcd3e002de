"""The evaluator: the fixed validation set of this rank, when to evaluate, and the result both as
`evaluate()` returns it (final.json, `lossreweight eval`) and under the metric names."""

from __future__ import annotations

from typing import Any

import torch

from lossreweight.metric_names import eval_metrics, worst_domain
from lossreweight.train.evaluate import evaluate
from lossreweight.train.runtime import Runtime


class Evaluator:
    """Evaluates every `every` steps (0: only at the end) and at the last step."""

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
        self.last: dict[str, Any] = {}  # the latest result, as evaluate() returns it

    def due(self, step: int, *, last: bool = False) -> bool:
        return last or bool(self.every and step % self.every == 0)

    def run(self) -> dict[str, Any]:
        """Collective under torch.distributed. Keeps and returns evaluate()'s result."""
        self.last = evaluate(self.loss_module, self.batches, self.domains, self.rt)
        return self.last

    @staticmethod
    def metrics(result: dict[str, Any]) -> dict[str, float]:
        """`eval/loss`, `eval/domain_avg_loss`, `eval/worst_domain_loss`, `eval/<domain>/loss`."""
        return eval_metrics(result)

    @staticmethod
    def worst_domain(result: dict[str, Any]) -> str | None:
        return worst_domain(result)
