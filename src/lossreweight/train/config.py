"""The run configuration, re-exported from `lossreweight.config` (where it lives: one schema
and one loader for every command)."""

from __future__ import annotations

from lossreweight.config import (
    CheckpointConfig,
    EvalConfig,
    LogConfig,
    ReweightConfig,
    RunConfig,
    TrainConfig,
    all_keys,
    apply_overrides,
    load_config,
    parse_value,
    preset_names,
    read_config_file,
    validate_config,
)

# The old private name, still imported by tests/test_reliability_inputs.py.
_all_keys = all_keys

__all__ = [
    "CheckpointConfig",
    "EvalConfig",
    "LogConfig",
    "ReweightConfig",
    "RunConfig",
    "TrainConfig",
    "all_keys",
    "apply_overrides",
    "load_config",
    "parse_value",
    "preset_names",
    "read_config_file",
    "validate_config",
]
