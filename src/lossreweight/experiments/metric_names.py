"""The trainer's metric names (train/*, reweight/*, eval/*; docs/metrics.md) read into the flat
names the experiments use (train_loss, max_weight_x_m, val_loss, val_loss_by_domain, ...).

Records written before the names were namespaced pass through unchanged, so studies cached
under either version of the trainer are summarised alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_TRAIN = {
    "train/loss": "train_loss",
    "train/weighted_loss": "weighted_loss",
    "train/lr": "lr",
    "train/grad_norm": "grad_norm",
    "train/skipped": "skipped",
    "train/tokens_per_s": "tokens_per_s",
    "train/mfu": "mfu",
}
_EVAL = {
    "eval/loss": "val_loss",
    "eval/ppl": "val_ppl",
    "eval/domain_avg_loss": "val_loss_domain_avg",
    "eval/worst_domain_loss": "worst_domain_loss",
    "eval/tokens": "val_tokens",
}


def flat_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """One metrics.jsonl record (or final.json) in the experiments' flat names."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in _TRAIN:
            out[_TRAIN[key]] = value
        elif key in _EVAL:
            out[_EVAL[key]] = value
        elif key.startswith("reweight/"):
            parts = key.split("/")
            if len(parts) == 2:
                out[parts[1]] = value
            else:  # reweight/<statistic>/<domain>
                out.setdefault(parts[1], {})["/".join(parts[2:])] = value
        elif key.startswith("eval/") and key.count("/") >= 2:
            domain, _, metric = key[len("eval/") :].rpartition("/")
            if metric == "loss":
                out.setdefault("val_loss_by_domain", {})[domain] = value
            elif metric == "ppl":
                out.setdefault("val_ppl_by_domain", {})[domain] = value
        else:
            out[key] = value
    return out
