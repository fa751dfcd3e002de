"""`lossreweight eval --all-checkpoints`: every saved complete checkpoint of a run evaluated into
a curve of per-domain loss (and downstream scores when tasks are asked for)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lossreweight.errors import CheckpointError
from lossreweight.evaluation.plot import plot_curve
from lossreweight.evaluation.results import (
    CURVE_STEM,
    EVAL_DIR,
    downstream_stem,
    write_new_json,
)
from lossreweight.metric_names import eval_metrics, worst_domain
from lossreweight.model.load import NonFiniteWeights
from lossreweight.rundir import complete_checkpoints
from lossreweight.train.evaluate import open_run

if TYPE_CHECKING:
    from lm_eval.tasks import TaskManager

    from lossreweight.evaluation.downstream import DownstreamSpec

log = logging.getLogger(__name__)


def evaluate_curve(
    run_dir: str | Path,
    *,
    device: str | None = None,
    spec: DownstreamSpec | None = None,
    tm: TaskManager | None = None,
    on_point: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[Path, Path | None, dict[str, Any]]:
    """Evaluate each complete checkpoint, oldest first; write RUN_DIR/eval/curve.json (curve_2.json
    ... when one exists) and its PNG. Returns (json path, png path or None, the curve).

    With `spec`, each checkpoint's downstream scores are also written as its own
    downstream_step_XXXXXXXX.json. A checkpoint that a still-running training deletes meanwhile
    (checkpoint.keep) is skipped."""
    run_dir = Path(run_dir)
    evaluator = open_run(run_dir, device)
    out_dir = run_dir / EVAL_DIR
    started = time.time()
    points: list[dict[str, Any]] = []
    for ckpt in complete_checkpoints(run_dir):
        try:
            result = evaluator.evaluate(ckpt)
        except NonFiniteWeights:  # a diverged checkpoint is never scored
            log.warning("checkpoint %s holds non-finite weights; skipped", ckpt.name)
            continue
        except CheckpointError:
            if ckpt.is_dir():
                raise
            log.warning("checkpoint %s was removed while evaluating; skipped", ckpt.name)
            continue
        point: dict[str, Any] = {
            "step": result["step"],
            "tokens": result["tokens"],
            "checkpoint": str(ckpt.relative_to(run_dir)),
            "worst_domain": worst_domain(result),
            "metrics": eval_metrics(result),
        }
        if spec is not None:
            from lossreweight.evaluation.downstream import evaluate_downstream

            assert tm is not None
            record = evaluate_downstream(run_dir, ckpt, spec, evaluator.rt.device, tm)
            file = write_new_json(out_dir, downstream_stem(record["step"]), record)
            point["metrics"].update(record["metrics"])
            point["downstream_file"] = file.name
        points.append(point)
        if on_point:
            on_point(point)
    if not points:
        raise CheckpointError(f"{run_dir} has no complete checkpoint left to evaluate")
    curve = {
        "run_dir": str(run_dir),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - started, 3),
        "device": str(evaluator.rt.device),
        "loss_unit": "nats per token",
        "domains": evaluator.domains,
        "downstream": spec.settings() if spec else None,
        "points": points,
    }
    path = write_new_json(out_dir, CURVE_STEM, curve)
    png = plot_curve(curve, out_dir, path.stem)
    return path, png, curve
