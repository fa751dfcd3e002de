"""Run configuration: the schema (`RunConfig` and its sections) and the one loader every
command uses (presets, YAML files, `key=value` overrides, one-line errors).

    from lossreweight.config import load_config
    cfg = load_config("tiny", ["train.max_steps=50"])
    cfg.burn_in_steps   # uniform-weight steps before reweighting starts
"""

from __future__ import annotations

from lossreweight.config.resolve import (
    all_keys,
    apply_overrides,
    check_key,
    load_config,
    load_data_config,
    validate_config,
)
from lossreweight.config.schema import (
    SCHEDULE_KEYS,
    TEMPERATURE_RANGE,
    CheckpointConfig,
    EvalConfig,
    LogConfig,
    ReweightConfig,
    RunConfig,
    TrainConfig,
)
from lossreweight.config.yaml_io import (
    dump_yaml,
    load_yaml,
    parse_value,
    preset_names,
    read_config_file,
)

__all__ = [
    "SCHEDULE_KEYS",
    "TEMPERATURE_RANGE",
    "CheckpointConfig",
    "EvalConfig",
    "LogConfig",
    "ReweightConfig",
    "RunConfig",
    "TrainConfig",
    "all_keys",
    "apply_overrides",
    "check_key",
    "dump_yaml",
    "load_config",
    "load_data_config",
    "load_yaml",
    "parse_value",
    "preset_names",
    "read_config_file",
    "validate_config",
]
