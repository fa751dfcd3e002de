"""A model read back from a run directory written by the trainer (`load_run_model`), or from
a weights file (`load_model_weights`): tied weights stored once and torch.compile/DDP name
prefixes are accepted. The run directory's names and readers are lossreweight.rundir's."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lossreweight.errors import CheckpointError
from lossreweight.integrity import verify_checkpoint
from lossreweight.model.base import CausalLM
from lossreweight.model.config import ModelConfig
from lossreweight.rundir import (
    MANIFEST_FILE,
    MODEL_WEIGHTS,
    RESOLVED_CONFIG,
    STATE_FILE,
    read_run_config,
    require_checkpoint,
)

# Wrappers that prefix state_dict names: torch.compile, DDP.
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def read_run_model_config(run_dir: str | Path) -> ModelConfig:
    """The `model` section of a run's config."""
    data = read_run_config(run_dir)
    if not isinstance(data.get("model"), dict):
        raise CheckpointError(
            f"{RESOLVED_CONFIG} of {run_dir} has no `model` section; is it a lossreweight run?"
        )
    return ModelConfig.from_dict(data["model"], where=f"{RESOLVED_CONFIG}: model")


def load_run_model(
    run_dir: str | Path, checkpoint: str | Path | None = None
) -> tuple[CausalLM, Path]:
    """Build the run's model and load a checkpoint into it (default: the newest complete one)."""
    run_dir = Path(run_dir)
    cfg = read_run_model_config(run_dir)
    ckpt = Path(checkpoint) if checkpoint else require_checkpoint(run_dir)
    weights = ckpt / MODEL_WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {ckpt} has no {MODEL_WEIGHTS}; it is damaged, delete it")
    # The trainer's checkpoints carry a manifest: what is read must match its hashes.
    if (ckpt / MANIFEST_FILE).is_file():
        verify_checkpoint(
            ckpt, only=[n for n in (MODEL_WEIGHTS, STATE_FILE) if (ckpt / n).exists()]
        )
    if cfg.hf is not None:
        from lossreweight.model.hf_model import build_hf_model

        model: CausalLM = build_hf_model(cfg, None, load_weights=False)
        load_model_weights(model, weights)
        return model, ckpt
    from lossreweight.model.llama import LlamaModel

    vocab = cfg.vocab_size or _embedding_rows(weights)
    with torch.device("meta"):  # no random init: the checkpoint overwrites every weight
        model = LlamaModel(cfg.resolved(vocab))
    load_model_weights(model, weights, assign=True)
    return model, ckpt


def load_model_weights(model: nn.Module, path: str | Path, *, assign: bool = False) -> None:
    """Load a model.safetensors state_dict, accepting a tied weight stored once and
    torch.compile/DDP name prefixes. `assign=True` for a model built on the meta device."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}; the file is damaged") from None
    load_state_into(model, state, source=str(path), assign=assign)


def _tied_groups(model: nn.Module) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    return groups


def fill_tied_aliases(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A tied weight may be stored under one of its names: copy it to the others."""
    state = dict(state)
    for names in _tied_groups(model).values():
        present = [n for n in names if n in state]
        for n in names:
            if present and n not in state:
                state[n] = state[present[0]]
    return state


def load_state_into(
    model: nn.Module, state: dict[str, torch.Tensor], source: str, assign: bool = False
) -> None:
    """`model.load_state_dict` with tied-weight aliases filled in and one-line errors."""
    state = fill_tied_aliases(model, {_strip_prefixes(k): v for k, v in state.items()})
    groups = _tied_groups(model)
    expected = model.state_dict(keep_vars=True)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not match the configured model: {len(missing)} missing tensors "
            f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}; "
            "is it from another run or model?"
        )
    if assign:  # keep the model's dtype (float32 master weights) whatever the file's
        state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True, assign=assign)
    except RuntimeError as exc:  # shape mismatches
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(
            f"{source} does not fit the configured model shape: {detail}"
        ) from None
    if assign:
        _retie(model, groups)
        if hasattr(model, "init_rope_tables"):
            model.init_rope_tables()


def _retie(model: nn.Module, groups: dict[int, list[str]]) -> None:
    # assign=True gives each name its own Parameter; point aliases back at the first one.
    for names in groups.values():
        first = model.get_parameter(names[0])
        for name in names[1:]:
            owner, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(owner), leaf, first)


def _strip_prefixes(name: str) -> str:
    for prefix in _WRAPPER_PREFIXES:
        name = name.removeprefix(prefix)
    return name


def _embedding_rows(weights: Path) -> int:
    from safetensors import SafetensorError, safe_open

    try:
        return _embedding_rows_of(safe_open(str(weights), framework="pt"), weights)
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(
            f"cannot read {weights}: {exc}; the file is damaged, delete its checkpoint"
        ) from None


def _embedding_rows_of(handle, weights: Path) -> int:  # noqa: ANN001 - a safetensors handle
    with handle as f:
        # A tied matrix may be stored under either name (safetensors.save_model keeps one).
        wanted = ("tok_embeddings.weight", "output.weight")
        name = next((k for k in f.keys() if _strip_prefixes(k) in wanted), None)  # noqa: SIM118
        if name is None:
            raise CheckpointError(
                f"{weights} has no tok_embeddings.weight; it is not our decoder's checkpoint"
            )
        return f.get_slice(name).get_shape()[0]
