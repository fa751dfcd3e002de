"""The one config loader every command uses: a preset or YAML file, `key=value` overrides by
dotted path, validation, and one-line `ConfigError`s that name the key and the fix."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from lossreweight.config.schema import RunConfig
from lossreweight.config.yaml_io import parse_value, read_config_file
from lossreweight.data.data_config import DataConfig
from lossreweight.errors import ConfigError

# Below these keys values are free-form mappings (a schedule, a mixture), checked by their
# own validators rather than by key name.
FREE_FORM = ("reweight.temperature.", "data.mixture.")
# Pairs of keys that say the same thing two ways. A file giving both is refused; an override
# of one replaces the other, so `tiny reweight.warmup_steps=100` just works on a preset that
# sets warmup_fraction.
EXCLUSIVE = {
    "reweight.warmup_steps": "reweight.warmup_fraction",
    "reweight.warmup_fraction": "reweight.warmup_steps",
    "train.lr_warmup_steps": "train.lr_warmup_fraction",
    "train.lr_warmup_fraction": "train.lr_warmup_steps",
    "reweight.burn_in_until_loss": "reweight.burn_in_below_unigram",
    "reweight.burn_in_below_unigram": "reweight.burn_in_until_loss",
}


def all_keys(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """Every dotted key of a config model, sections included (`train`, `train.lr`, ...)."""
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += all_keys(ann, prefix + name + ".")
    return keys


def check_key(dotted: str) -> None:
    """Unknown keys fail early, naming the closest valid ones."""
    valid = all_keys()
    if dotted in valid or dotted.startswith(FREE_FORM):
        return
    close = difflib.get_close_matches(dotted, valid, n=3, cutoff=0.5)
    if not close:
        tail = dotted.rsplit(".", 1)[-1]
        close = [k for k in valid if k.endswith("." + tail)][:3]
    hint = (
        f"; did you mean {', '.join(close)}?"
        if close
        else f"; sections: {', '.join(RunConfig.model_fields)}"
    )
    raise ConfigError(f"unknown config key {dotted!r}{hint} (all keys: lossreweight config)")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each `dotted.key=value` in `data` (in place), creating sections as needed."""
    exclusive_seen: dict[str, str] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"override {item!r} must look like key=value, e.g. train.max_steps=100"
            )
        key, _, raw = item.partition("=")
        key = key.strip()
        check_key(key)
        parts = key.split(".")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = parse_value(raw)
        if key in EXCLUSIVE:
            other = EXCLUSIVE[key]
            if other in exclusive_seen:
                raise ConfigError(
                    f"overrides {exclusive_seen[other]!r} and {item!r} say the same thing two "
                    "ways; give one of them"
                )
            exclusive_seen[key] = item
            node.pop(other.rsplit(".", 1)[1], None)
    return data


def load_config(spec: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """A preset name or YAML file, with `key=value` overrides, validated."""
    overrides = list(overrides or [])
    data = read_config_file(spec)
    return validate_config(apply_overrides(data, overrides), where=str(spec))


def validate_config(data: dict[str, Any], where: str = "config") -> RunConfig:
    """A mapping of sections as a `RunConfig`, or a one-line `ConfigError`."""
    _check_sections(data)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {describe(exc)}") from None


def load_data_config(spec: str | Path, overrides: list[str] | None = None) -> DataConfig:
    """The data section of a run config (or a file holding only a data section), for `prepare`.

    Overrides are `data.KEY=value`; the other sections of a run config are read (so a typo
    in them is still reported) but not validated.
    """
    data = read_config_file(spec)
    if "data" in data or any(k in RunConfig.model_fields for k in data):
        _check_sections(data)
        section = data.get("data")
        section = {} if section is None else section
        if not isinstance(section, dict):
            raise ConfigError(f"{spec}: data: must be a mapping of settings")
    else:
        section = data  # a file holding only the data settings
    for item in overrides or []:
        if not item.partition("=")[0].strip().startswith("data."):
            raise ConfigError(
                f"override {item!r}: prepare reads only the data section; give data.KEY=value"
            )
    section = apply_overrides({"data": dict(section)}, list(overrides or []))["data"]
    try:
        return RunConfig.model_validate({"data": section}).data
    except ValidationError as exc:
        raise ConfigError(f"{spec}: {describe(exc)}") from None


def _check_sections(data: dict[str, Any]) -> None:
    for key in data:
        if key not in RunConfig.model_fields:
            check_key(str(key))  # YAML allows non-string keys (1: x)


def describe(exc: ValidationError) -> str:
    """One line for all problems, each with its dotted key; unknown keys get the closest ones."""
    parts = []
    for err in exc.errors():
        loc = ".".join(
            str(x) for x in err["loc"] if not str(x).startswith(("function-", "literal["))
        )
        if err["type"] == "extra_forbidden":
            try:
                check_key(loc)
            except ConfigError as e:
                parts.append(str(e))
                continue
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] not in ("value_error", "missing") and "input" in err:
            got = repr(err["input"])  # an exploded value could be megabytes
            msg = f"{msg} (got {got if len(got) <= 80 else got[:77] + '...'})"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(dict.fromkeys(parts))
