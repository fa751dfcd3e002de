"""Evaluating a finished run: downstream tasks through lm-evaluation-harness, and curves of
per-domain loss (and downstream scores) over every saved checkpoint.

Files written under RUN_DIR/eval/ (see docs/evaluation.md):

    downstream_step_XXXXXXXX.json   one `lossreweight eval --tasks` result (never overwritten:
                                    a second evaluation of the same step gets a `_2` suffix)
    curve.json, curve.png           `lossreweight eval --all-checkpoints` (also never overwritten)

lm-eval is imported only by `lossreweight.evaluation.downstream`, and only when tasks are asked for.
"""

from lossreweight.evaluation.results import EVAL_DIR, read_curves, read_downstream

__all__ = ["EVAL_DIR", "read_curves", "read_downstream"]
