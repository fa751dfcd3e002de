"""The run configuration: validated plain data, loaded from YAML presets or files, with
`key=value` overrides by dotted path."""

from __future__ import annotations

import difflib
import importlib.resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lossreweight.data import DataConfig
from lossreweight.errors import ConfigError
from lossreweight.model import ModelConfig
from lossreweight.reweighting import available_strategies, make_schedule


class _Section(BaseModel):
    # NaN/inf pass `gt=0` checks (inf > 0): refuse them, a run with lr=inf is silently doomed.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TrainConfig(_Section):
    seed: int = Field(0, ge=0, le=2**63 - 1, description="model init and data order")
    max_steps: int = Field(200, ge=1, description="optimizer steps")
    batch_size: int = Field(16, ge=1, description="sequences per micro-batch per rank")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(3e-3, gt=0.0)
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="final lr / peak lr (cosine)")
    lr_warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.1, ge=0.0)
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.95, ge=0.0, lt=1.0)
    grad_clip: float = Field(1.0, ge=0.0, description="max global grad norm; 0 disables")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on CUDA, fp32 on CPU")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = Field(False, description="torch.compile the model (15-20 s warm-up on CPU)")
    fsdp: bool = Field(False, description="shard with FSDP2 (fully_shard) instead of DDP")
    loss_path: Literal["auto", "logits", "fused"] = Field(
        "auto", description="fused: per-sample CE from hidden states, never forming the logits"
    )
    max_nonfinite_steps: int = Field(5, ge=1, description="stop after this many non-finite steps in a row")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")


class ReweightConfig(_Section):
    strategy: str = "linupper"
    temperature: float | dict[str, Any] = 0.4
    delta: float = Field(1.0, gt=0.0)
    warmup_steps: int = Field(0, ge=0)
    max_weight: float | None = Field(None, ge=1.0)
    scope: Literal["micro", "step"] = "micro"

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, v: str) -> str:
        if v not in available_strategies():
            hint = " ('upper' is ambiguous: say 'linear' or 'linupper')" if v == "upper" else ""
            raise ValueError(f"unknown strategy {v!r}{hint}; valid: {', '.join(available_strategies())}")
        return v

    @field_validator("temperature")
    @classmethod
    def _valid_schedule(cls, v: float | dict[str, Any]) -> float | dict[str, Any]:
        try:
            make_schedule(v)  # raises ValueError with the reason
        except (TypeError, KeyError, AttributeError) as exc:  # e.g. {kind: [1]}: unhashable kind
            raise ValueError(f"invalid temperature schedule {v!r}: {exc}") from None
        return v


class EvalConfig(_Section):
    every: int = Field(100, ge=0, description="evaluate every N steps (0: only at the end)")
    batch_size: int = Field(32, ge=1)
    max_sequences_per_domain: int | None = Field(64, ge=1)


class LogConfig(_Section):
    every: int = Field(10, ge=1)
    tensorboard: bool = True
    progress: bool = True
    wandb_project: str | None = None
    wandb_run_name: str | None = None


class CheckpointConfig(_Section):
    every: int = Field(100, ge=0, description="save every N steps (0: only at the end)")
    keep: int = Field(2, ge=1, description="complete checkpoints to keep")


class RunConfig(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    reweight: ReweightConfig = Field(default_factory=ReweightConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# -- loading -------------------------------------------------------------------------------
def preset_names() -> list[str]:
    root = importlib.resources.files("lossreweight") / "configs"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def read_config_file(spec: str | Path) -> dict[str, Any]:
    """A YAML file path, or the name of a preset shipped with the package."""
    path = Path(spec)
    if path.is_file():
        text, where = _read_text(path), str(path)
    else:
        res = importlib.resources.files("lossreweight") / "configs" / f"{spec}.yaml"
        if not res.is_file():
            raise ConfigError(
                f"config {str(spec)!r} is neither a file nor a preset; presets: {', '.join(preset_names())}"
            )
        text, where = res.read_text(), f"preset {spec}"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ConfigError(f"{where} is nested too deeply to be a config") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of sections (data, model, train, ...)")
    return data


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None


def parse_value(text: str) -> Any:
    """`key=value` values are YAML scalars/flows: 3, 0.4, true, null, [a, b], {kind: step}."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    except RecursionError:
        raise ConfigError(f"override value {text[:20]!r}... is nested too deeply") from None


def _all_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += _all_keys(ann, prefix + name + ".")
    return keys


def _check_key(dotted: str) -> None:
    """Unknown keys fail early, naming the closest valid ones."""
    valid = _all_keys(RunConfig)
    # Free-form values below these keys (a schedule dict, a mixture dict) are not checked here.
    free = ("reweight.temperature.", "data.mixture.")
    if dotted in valid or dotted.startswith(free):
        return
    close = difflib.get_close_matches(dotted, valid, n=3, cutoff=0.5)
    if not close:
        tail = dotted.rsplit(".", 1)[-1]
        close = [k for k in valid if k.endswith("." + tail)][:3]
    hint = f"; did you mean {', '.join(close)}?" if close else f"; sections: {', '.join(RunConfig.model_fields)}"
    raise ConfigError(f"unknown config key {dotted!r}{hint}")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value, e.g. train.max_steps=100")
        key, _, raw = item.partition("=")
        key = key.strip()
        _check_key(key)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = parse_value(raw)
    return data


def load_config(spec: str | Path, overrides: list[str] | None = None) -> RunConfig:
    data = apply_overrides(read_config_file(spec), list(overrides or []))
    return validate_config(data, where=str(spec))


def validate_config(data: dict[str, Any], where: str = "config") -> RunConfig:
    unknown = [k for k in data if k not in RunConfig.model_fields]
    for k in unknown:
        _check_key(str(k))  # YAML allows non-string keys (1: x)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    """One line per problem, with the dotted key; unknown keys get the closest valid ones."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"] if not str(x).startswith(("function-", "literal[")))
        if err["type"] == "extra_forbidden":
            try:
                _check_key(loc)
            except ConfigError as e:
                parts.append(str(e))
                continue
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] not in ("value_error", "missing") and "input" in err:
            msg = f"{msg} (got {err['input']!r})"
        parts.append(f"{loc}: {msg}")
    return "; ".join(dict.fromkeys(parts))
