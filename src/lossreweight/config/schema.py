"""The run configuration as validated plain data: one pydantic model per section.

Every field carries a `description`: `lossreweight config` prints it as a comment and
docs/config.md is generated from it, so the meaning of a key is written once, here.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lossreweight.data.data_config import DataConfig
from lossreweight.model.model_config import ModelConfig

# The library's bounds (reweighting/checks.py says why): the config refuses what it would.
from lossreweight.reweighting import (
    DELTA_RANGE,
    TEMPERATURE_RANGE,
    available_strategies,
    get_strategy,
    make_schedule,
)

# The paper's GPT-2 code keeps weights uniform for the first 1,000 of 20,000 steps
# (`burnout_steps`): the losses carry information only once the model has learned some language.
DEFAULT_BURN_IN_FRACTION = 0.05
DEFAULT_LR_WARMUP_STEPS = 20

# The keys of `reweight.temperature` when it is a schedule (a mapping with `kind`).
SCHEDULE_KEYS: dict[str, str] = {
    "kind": "constant | step | linear | cosine | exponential",
    "r": "constant, step: the temperature (after switch_step for step)",
    "r_warm": "step: the temperature before switch_step (the Llama code: 100)",
    "switch_step": "step: first step at temperature r (the Llama code: 2000)",
    "r_start": "linear, cosine, exponential: temperature at start_step",
    "r_end": "linear, cosine, exponential: temperature from start_step + span on",
    "span": "linear, cosine, exponential: steps of the annealing (> 0)",
    "start_step": "linear, cosine, exponential: step where the annealing starts (default 0)",
}
_TEMPERATURE_KEYS = ("r", "r_warm", "r_start", "r_end")


class _Section(BaseModel):
    # NaN/inf pass `gt=0` checks (inf > 0): refuse them, a run with lr=inf is silently doomed.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TrainConfig(_Section):
    """Optimisation: steps, batch, AdamW, the learning-rate schedule, precision, parallelism."""

    seed: int = Field(0, ge=0, le=2**63 - 1, description="model init and data order")
    max_steps: int = Field(200, ge=1, description="optimizer steps")
    batch_size: int = Field(16, ge=1, description="sequences per micro-batch per rank")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(3e-3, gt=0.0, description="peak learning rate (AdamW)")
    min_lr_ratio: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="final lr / peak lr at the end of the cosine decay (schedule_steps)",
    )
    lr_warmup_steps: int | None = Field(
        None,
        ge=0,
        description=f"linear lr warm-up steps; give this or lr_warmup_fraction "
        f"(neither: {DEFAULT_LR_WARMUP_STEPS})",
    )
    lr_warmup_fraction: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description="lr warm-up as a fraction of schedule_steps (follows max_steps overrides)",
    )
    weight_decay: float = Field(
        0.1, ge=0.0, description="AdamW decoupled weight decay (matrices only)"
    )
    beta1: float = Field(0.9, ge=0.0, lt=1.0, description="AdamW beta1")
    beta2: float = Field(0.95, ge=0.0, lt=1.0, description="AdamW beta2")
    grad_clip: float = Field(1.0, ge=0.0, description="max global grad norm; 0 disables")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA, fp32 on CPU"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available")
    compile: bool = Field(False, description="torch.compile the model (15-20 s warm-up on CPU)")
    fsdp: bool = Field(False, description="shard with FSDP2 (fully_shard) instead of DDP")
    loss_path: Literal["auto", "logits", "fused"] = Field(
        "auto", description="fused: per-sample CE from hidden states, never forming the logits"
    )
    max_nonfinite_steps: int = Field(
        5, ge=1, description="stop after this many non-finite steps in a row"
    )
    threads: int | None = Field(None, ge=1, description="torch CPU threads (null: torch's default)")
    schedule_steps: int | None = Field(
        None,
        ge=1,
        description="the run length the schedules are laid out over (the cosine decay ends "
        "there; lr warm-up and burn-in fractions are taken of it); null: max_steps at the "
        "run's first start, stored with the run: raising max_steps continues a finished run "
        "at the floor lr, without redoing warm-up or burn-in",
    )

    @model_validator(mode="after")
    def _one_lr_warmup(self) -> TrainConfig:
        _one_of(self, "lr_warmup_steps", "lr_warmup_fraction", "train")
        if self.lr_warmup_steps is None and self.lr_warmup_fraction is None:
            self.lr_warmup_steps = DEFAULT_LR_WARMUP_STEPS
        return self

    @property
    def schedule_length(self) -> int:
        """The steps the schedules span: schedule_steps, else max_steps."""
        return self.schedule_steps or self.max_steps

    @property
    def lr_warmup(self) -> int:
        """Resolved lr warm-up steps (a fraction is taken of schedule_length)."""
        if self.lr_warmup_steps is not None:
            return self.lr_warmup_steps
        return round((self.lr_warmup_fraction or 0.0) * self.schedule_length)


class ReweightConfig(_Section):
    """How losses become sample weights (the paper's strategies), and the burn-in before it."""

    strategy: str = Field(
        "linupper", description=f"weighting strategy: {', '.join(available_strategies())}"
    )
    temperature: float | dict[str, Any] = Field(
        0.4,
        description="r > 0 (smaller: sharper weights), or a schedule {kind: ..., ...} "
        f"(see the schedule keys); each r in [{TEMPERATURE_RANGE[0]:g}, {TEMPERATURE_RANGE[1]:g}]",
    )
    delta: float = Field(
        1.0,
        ge=DELTA_RANGE[0],
        le=DELTA_RANGE[1],
        description="losses are normalised to [-delta, delta] (the paper: 1)",
    )
    warmup_steps: int | None = Field(
        None,
        ge=0,
        description="burn-in: steps with uniform weights before reweighting starts; "
        "give this or warmup_fraction",
    )
    warmup_fraction: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description=f"burn-in as a fraction of train.max_steps (neither given: "
        f"{DEFAULT_BURN_IN_FRACTION}, the paper's 1,000 of 20,000)",
    )
    burn_in_until_loss: float | None = Field(
        None,
        gt=0.0,
        description="end the burn-in by progress: at the first step (after warmup_steps or "
        "warmup_fraction, then a minimum) where the smoothed train loss is below this (nats)",
    )
    burn_in_below_unigram: float | None = Field(
        None,
        ge=0.0,
        description="end the burn-in by progress: once the smoothed train loss is this many nats "
        "below the unigram entropy of the training mix (prepare stores it; 0: as soon as the "
        "model beats word frequencies); warmup_steps or warmup_fraction is then a minimum",
    )
    burn_in_smoothing: float = Field(
        0.9,
        ge=0.0,
        lt=1.0,
        description="the progress rule's moving average of the train loss: weight of the past "
        "(0.9: about the last 10 steps)",
    )
    max_weight: float | None = Field(
        None, ge=1.0, description="cap each weight at max_weight / M (M samples); null: no cap"
    )
    scope: Literal["micro", "step"] = Field(
        "micro",
        description="micro: weights over each micro-batch (the paper); step: over all "
        "micro-batches of an optimizer step",
    )

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, v: str) -> str:
        if v not in available_strategies():
            hint = " ('upper' is ambiguous: say 'linear' or 'linupper')" if v == "upper" else ""
            raise ValueError(
                f"unknown strategy {v!r}{hint}; valid: {', '.join(available_strategies())}"
            )
        get_strategy(v)  # an installed package's strategy loads now: a broken one is a config error
        return v

    @field_validator("temperature", mode="before")
    @classmethod
    def _number_or_schedule(cls, v: Any) -> Any:
        # Before pydantic tries each member of the union, so a wrong type is one message.
        if isinstance(v, bool) or not isinstance(v, int | float | dict):
            raise ValueError(
                f"temperature must be a number r > 0 or a schedule mapping such as "
                f"{{kind: step, r: 0.4}}, got {v!r}"
            )
        return v

    @field_validator("temperature")
    @classmethod
    def _valid_schedule(cls, v: float | dict[str, Any]) -> float | dict[str, Any]:
        if isinstance(v, dict):
            for key, value in v.items():
                if isinstance(value, bool):
                    raise ValueError(f"temperature.{key} is a boolean ({value}); give a number")
        try:
            schedule = make_schedule(v)  # raises ValueError with the reason
        except (TypeError, KeyError, AttributeError) as exc:  # e.g. {kind: [1]}: unhashable kind
            raise ValueError(f"invalid temperature schedule {v!r}: {exc}") from None
        lo, hi = TEMPERATURE_RANGE
        for key, value in schedule.to_dict().items():
            if key in _TEMPERATURE_KEYS and not lo <= value <= hi:
                name = "temperature" if isinstance(v, int | float) else f"temperature.{key}"
                raise ValueError(
                    f"{name}={value:g} is outside [{lo:g}, {hi:g}]: below, the weights underflow "
                    "to one sample; above, they are uniform (use strategy uniform); "
                    "pick r in range"
                )
        return v

    @model_validator(mode="after")
    def _one_burn_in(self) -> ReweightConfig:
        _one_of(self, "warmup_steps", "warmup_fraction", "reweight")
        _one_of(self, "burn_in_until_loss", "burn_in_below_unigram", "reweight")
        if self.warmup_steps is None and self.warmup_fraction is None:
            self.warmup_fraction = DEFAULT_BURN_IN_FRACTION
        return self


class EvalConfig(_Section):
    """Validation loss per domain during training."""

    every: int = Field(100, ge=0, description="evaluate every N steps (0: only at the end)")
    batch_size: int = Field(32, ge=1, description="sequences per evaluation batch")
    max_sequences_per_domain: int | None = Field(
        64, ge=1, description="validation sequences per domain (null: all)"
    )


class LogConfig(_Section):
    """Where and how often metrics go."""

    every: int = Field(10, ge=1, description="log metrics every N steps (metrics.jsonl)")
    tensorboard: bool = Field(True, description="also write TensorBoard events (RUN/tensorboard)")
    progress: bool = Field(True, description="a progress bar on a terminal")
    wandb_project: str | None = Field(
        None, description="log to this Weights & Biases project (needs the wandb extra)"
    )
    wandb_run_name: str | None = Field(None, description="the W&B run name (null: W&B's own)")


class CheckpointConfig(_Section):
    """When checkpoints are written and how many are kept."""

    every: int = Field(100, ge=0, description="save every N steps (0: only at the end)")
    keep: int = Field(2, ge=1, description="complete checkpoints to keep")


class RunConfig(_Section):
    """A whole run: what to train on, which model, how, and what to record."""

    data: DataConfig = Field(default_factory=DataConfig, description="the corpus and its tokens")
    model: ModelConfig = Field(default_factory=ModelConfig, description="the network")
    train: TrainConfig = Field(default_factory=TrainConfig, description="optimisation")
    reweight: ReweightConfig = Field(
        default_factory=ReweightConfig, description="loss-based sample reweighting"
    )
    eval: EvalConfig = Field(default_factory=EvalConfig, description="validation")
    log: LogConfig = Field(default_factory=LogConfig, description="metrics")
    checkpoint: CheckpointConfig = Field(
        default_factory=CheckpointConfig, description="checkpoints"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, data: Any) -> Any:
        problem = boolean_as_number(cls, data, "")
        if problem:
            raise ValueError(problem)
        return data

    @property
    def burn_in_steps(self) -> int:
        """Steps of uniform weights: reweight.warmup_steps, or warmup_fraction of max_steps."""
        if self.reweight.warmup_steps is not None:
            return self.reweight.warmup_steps
        return round((self.reweight.warmup_fraction or 0.0) * self.train.schedule_length)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _one_of(section: BaseModel, steps: str, fraction: str, where: str) -> None:
    if getattr(section, steps) is not None and getattr(section, fraction) is not None:
        raise ValueError(
            f"{where}.{steps} and {where}.{fraction} are both set; give one of them "
            f"(set the other to null)"
        )


def boolean_as_number(model: type[BaseModel], data: Any, prefix: str) -> str | None:
    """The first `true`/`false` given for a numeric key, as a message (pydantic takes it as 1/0)."""
    if not isinstance(data, dict):
        return None
    for name, field in model.model_fields.items():
        if name not in data:
            continue
        value, key = data[name], f"{prefix}{name}"
        sub = _submodel(field.annotation)
        if sub is not None:
            found = boolean_as_number(sub, value, f"{key}.")
        else:
            found = _bool_where_number(field.annotation, value, key)
        if found:
            return found
    return None


def _submodel(annotation: Any) -> type[BaseModel] | None:
    for t in (annotation, *typing.get_args(annotation)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _bool_where_number(annotation: Any, value: Any, key: str) -> str | None:
    """Checks `int`/`float` fields, and the values of `dict[str, float]` ones (data.mixture)."""
    args = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    if bool in args:
        return None
    if isinstance(value, bool) and (int in args or float in args):
        kind = "an integer" if int in args else "a number"
        return f"{key}: {str(value).lower()} is a boolean, not a number; give {kind}"
    if isinstance(value, dict):
        for t in args:
            if typing.get_origin(t) is dict and typing.get_args(t)[1:] in ((float,), (int,)):
                for k, v in value.items():
                    if isinstance(v, bool):
                        return f"{key}.{k}: {str(v).lower()} is a boolean, not a number"
    return None


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)
