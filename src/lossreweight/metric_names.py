"""The one metric vocabulary: every name a number is written under, in metrics.jsonl, final.json,
TensorBoard, wandb, eval curves and reports, by the pipeline, the Hugging Face adapter and the
Lightning mixin alike (docs/metrics.md has the table). Names are written once, here, and read as
written; `from_legacy` reads the names of runs written before the vocabulary.

Axes: `step` (optimizer steps done, 1 after the first) and `tokens`.
Training (one record per logged step):
    train/loss, train/weighted_loss, train/lr, train/grad_norm, train/skipped,
    train/tokens_per_s, train/mfu
    reweight/<statistic>            the Reweighter's statistics (SPEC 5)
    reweight/<statistic>/<domain>   per-domain statistics (domain_weight_share, ...)
Validation loss (nats per token):
    eval/loss                 token-weighted mean over all validation tokens
    eval/ppl                  exp(eval/loss)
    eval/domain_avg_loss      mean of the per-domain losses (each domain counts once)
    eval/worst_domain_loss    the highest per-domain loss
    eval/<domain>/loss        one domain
    eval/tokens               validation tokens scored
Downstream (lm-evaluation-harness):
    downstream/<task>/<metric>           e.g. downstream/sciq/acc, downstream/sciq/acc_norm
    downstream/<task>/<metric>_stderr    its standard error, when lm-eval computed one
    downstream/<task>/<metric>/<filter>  for a metric under a filter other than lm-eval's "none"
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# -- axes -----------------------------------------------------------------------------------
STEP = "step"
TOKENS = "tokens"
X_AXES = (STEP, TOKENS)
# TensorBoard text: the resolved config (the HF Trainer writes its TrainingArguments as `args`).
CONFIG_TAG = "config"

# -- training -------------------------------------------------------------------------------
TRAIN_LOSS = "train/loss"
WEIGHTED_LOSS = "train/weighted_loss"
LR = "train/lr"
GRAD_NORM = "train/grad_norm"
SKIPPED = "train/skipped"
TOKENS_PER_S = "train/tokens_per_s"
MFU = "train/mfu"
REWEIGHT_PREFIX = "reweight/"
# The Reweighter's statistics that are training losses, and their names.
LOSS_STATS = {"mean_loss": TRAIN_LOSS, "weighted_loss": WEIGHTED_LOSS}
COUNTS = ("num_samples", "num_invalid")

# -- validation -----------------------------------------------------------------------------
LOSS = "eval/loss"
PPL = "eval/ppl"
DOMAIN_AVG_LOSS = "eval/domain_avg_loss"
WORST_DOMAIN_LOSS = "eval/worst_domain_loss"
EVAL_TOKENS = "eval/tokens"
_EVAL_SUMMARIES = (LOSS, PPL, DOMAIN_AVG_LOSS, WORST_DOMAIN_LOSS, EVAL_TOKENS)


def reweight_name(statistic: str, domain: str | None = None, prefix: str = REWEIGHT_PREFIX) -> str:
    """`reweight/<statistic>`, or `reweight/<statistic>/<domain>` for a per-domain one (the
    integrations let a user choose another prefix)."""
    return f"{prefix}{statistic}" + ("" if domain is None else f"/{domain}")


def domain_loss_name(domain: str) -> str:
    return f"eval/{domain}/loss"


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


# -- training records -----------------------------------------------------------------------
def step_metrics(
    values: Mapping[str, Any], *, lr: float, domains: Sequence[str], skipped: bool
) -> dict[str, Any]:
    """Name one step's values (host numbers: the Reweighter's statistics and `grad_norm`)."""
    record: dict[str, Any] = {
        TRAIN_LOSS: values.get("mean_loss"),
        WEIGHTED_LOSS: values.get("weighted_loss"),
        LR: lr,
        GRAD_NORM: values.get("grad_norm"),
        SKIPPED: skipped,
    }
    for key, value in values.items():
        if key in LOSS_STATS or key == "grad_norm":
            continue
        if isinstance(value, list):  # one value per domain
            record.update({reweight_name(key, d): v for d, v in zip(domains, value, strict=True)})
        elif key in COUNTS and value == value:  # not NaN
            record[reweight_name(key)] = int(round(value))
        else:
            record[reweight_name(key)] = value
    return record


def rate_metrics(tokens_per_s: float, mfu: float | None) -> dict[str, float]:
    out = {TOKENS_PER_S: tokens_per_s}
    if mfu is not None:
        out[MFU] = mfu
    return out


# -- validation records ---------------------------------------------------------------------
def eval_record(by_domain: Mapping[str, float], overall: float, tokens: int) -> dict[str, Any]:
    """An evaluation's values under their names: the overall and per-domain losses, their
    summaries (domain average, worst domain) and the tokens scored."""
    out: dict[str, Any] = {
        LOSS: float(overall),
        PPL: perplexity(overall),
        DOMAIN_AVG_LOSS: sum(by_domain.values()) / max(len(by_domain), 1),
    }
    if by_domain:
        out[WORST_DOMAIN_LOSS] = float(max(by_domain.values()))
    out.update({domain_loss_name(d): float(v) for d, v in by_domain.items()})
    out[EVAL_TOKENS] = int(tokens)
    return out


def domain_losses(record: Mapping[str, Any]) -> dict[str, float]:
    """`{domain: loss}` from the `eval/<domain>/loss` names of a record, in its order."""
    out = {}
    for key, value in record.items():
        if key.startswith("eval/") and key.endswith("/loss") and key not in _EVAL_SUMMARIES:
            out[key[len("eval/") : -len("/loss")]] = value
    return out


def eval_metrics(record: Mapping[str, Any]) -> dict[str, Any]:
    """The `eval/` names of a record (a metrics record, final.json, an evaluation)."""
    return {k: v for k, v in record.items() if k.startswith("eval/")}


def worst_domain(record: Mapping[str, Any]) -> str | None:
    """The domain of the highest validation loss in a record, or None."""
    losses = {d: v for d, v in domain_losses(record).items() if v is not None}
    return max(losses, key=losses.__getitem__) if losses else None


# -- downstream -----------------------------------------------------------------------------
def downstream_metrics(results: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """Flatten lm-eval's `results` ({task: {"acc,none": 0.5, "acc_stderr,none": "N/A", ...}})
    into `downstream/<task>/<metric>` names. Scores lm-eval could not compute ("N/A") are left
    out; a NaN score is kept as None so the JSON stays valid and the gap stays visible."""
    out: dict[str, float | None] = {}
    for task, scores in results.items():
        for key, value in scores.items():
            if "," not in key or isinstance(value, bool) or not isinstance(value, int | float):
                continue  # "alias", "name", "sample_len", or an "N/A" stderr
            metric, filt = key.split(",", 1)
            name = f"downstream/{task}/{metric}" + ("" if filt == "none" else f"/{filt}")
            out[name] = float(value) if math.isfinite(value) else None
    return out


# -- the Hugging Face Trainer's names -------------------------------------------------------
_HF_TRAIN = {
    "loss": TRAIN_LOSS,
    "weighted_loss": WEIGHTED_LOSS,
    "learning_rate": LR,
    "grad_norm": GRAD_NORM,
}


def from_hf(logs: Mapping[str, Any], eval_domains: Sequence[str] = ()) -> dict[str, Any]:
    """A `Trainer.log` dict under the vocabulary (what the adapter writes to TensorBoard):
    `loss` -> train/loss, `learning_rate` -> train/lr, `reweight/...` as is,
    `eval_loss` -> eval/loss, `eval_<domain>_loss` -> eval/<domain>/loss; any other key as
    Hugging Face's own loggers name it (`eval_x` -> eval/x, `x` -> train/x)."""
    out: dict[str, Any] = {}
    for key, value in logs.items():
        if key in _HF_TRAIN:
            name = _HF_TRAIN[key]
        elif key.startswith(REWEIGHT_PREFIX):
            name = key
        elif key.startswith("eval_"):
            rest = key[len("eval_") :]
            domain = rest.removesuffix("_loss")
            name = domain_loss_name(domain) if domain in eval_domains else f"eval/{rest}"
        elif key.startswith("test_"):
            name = f"test/{key[len('test_') :]}"
        else:
            name = f"train/{key}"
        out[name] = value
    return out


# -- runs written before the vocabulary -----------------------------------------------------
_LEGACY = {
    "val_loss": LOSS,
    "val_ppl": PPL,
    "val_loss_domain_avg": DOMAIN_AVG_LOSS,
    "worst_domain_loss": WORST_DOMAIN_LOSS,
    "val_tokens": EVAL_TOKENS,
    "train_loss": TRAIN_LOSS,
    "weighted_loss": WEIGHTED_LOSS,
    "lr": LR,
    "grad_norm": GRAD_NORM,
    "skipped": SKIPPED,
    "tokens_per_s": TOKENS_PER_S,
    "mfu": MFU,
}
# The Reweighter's statistics, which older metrics records wrote without the `reweight/`
# prefix (the per-domain ones as `{domain: value}`).
_LEGACY_STATS = (
    "num_samples",
    "num_invalid",
    "all_invalid",
    "temperature",
    "max_weight_x_m",
    "min_weight_x_m",
    "ess_fraction",
    "entropy_fraction",
    "frac_above_2_over_m",
    "weight_loss_corr",
)
_LEGACY_DOMAIN_STATS = ("domain_weight_share", "domain_sample_share")


def from_legacy(record: Mapping[str, Any]) -> dict[str, Any]:
    """A final.json, metrics.jsonl record or evaluation result of an older run (`val_loss`,
    `val_loss_by_domain`, `train_loss`, `max_weight_x_m`, `domain_weight_share: {domain: x}`,
    ...) under the vocabulary; a record already in it comes back unchanged."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in _LEGACY:
            out[_LEGACY[key]] = value
        elif key in _LEGACY_STATS:
            out[reweight_name(key)] = value
        elif key in _LEGACY_DOMAIN_STATS and isinstance(value, Mapping):
            out.update({reweight_name(key, d): v for d, v in value.items()})
        elif key == "val_loss_by_domain" and isinstance(value, Mapping):
            out.update({domain_loss_name(d): v for d, v in value.items()})
            losses = [v for v in value.values() if v is not None]
            if losses and WORST_DOMAIN_LOSS not in record:
                out.setdefault(WORST_DOMAIN_LOSS, max(losses))
        elif key == "val_ppl_by_domain":
            continue  # exp of the domain's loss
        else:
            out[key] = value
    return out
