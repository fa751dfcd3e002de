"""A model read back from a run directory written by the trainer (`load_run_model`), or from
a weights file (`load_model_weights`): tied weights stored once and torch.compile/DDP name
prefixes are accepted. The run directory's names and readers are lossreweight.rundir's."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lossreweight.errors import CheckpointError
from lossreweight.integrity import is_good, verify_checkpoint
from lossreweight.model.base import CausalLM
from lossreweight.model.model_config import ModelConfig
from lossreweight.rundir import (
    MANIFEST_FILE,
    MODEL_WEIGHTS,
    RESOLVED_CONFIG,
    STATE_FILE,
    complete_checkpoints,
    read_run_config,
    require_checkpoint,
    trainer_of,
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


class NonFiniteWeights(CheckpointError):
    """A checkpoint whose weights hold NaN or inf: scores of it would be meaningless."""


def load_run_model(
    run_dir: str | Path,
    checkpoint: str | Path | None = None,
    *,
    allow_nonfinite: bool = False,
    force_hint: str = "",
) -> tuple[CausalLM, Path]:
    """Build the run's model and load a checkpoint into it (default: the newest complete one).

    A checkpoint of non-finite weights (a diverged run) raises NonFiniteWeights, naming the
    last good checkpoint, unless `allow_nonfinite` (export-hf --force); `force_hint` is added
    to the message (how to go on anyway)."""
    run_dir = Path(run_dir)
    cfg = read_run_model_config(run_dir)
    ckpt = Path(checkpoint) if checkpoint else require_checkpoint(run_dir)
    try:
        model, finite = _load(cfg, ckpt)
    except CheckpointError as exc:
        if trainer := trainer_of(run_dir):  # not damage: a save or a prune while we read
            raise CheckpointError(
                f"{run_dir} is being trained ({trainer}): checkpoint {ckpt.name} changed while "
                f"it was read ({str(exc)[:120]}); re-run the command, or wait for the training "
                "to finish"
            ) from None
        raise
    if not allow_nonfinite and not (finite and _all_finite(model)):
        raise NonFiniteWeights(_nonfinite(run_dir, ckpt) + force_hint)
    return model, ckpt


def _load(cfg: ModelConfig, ckpt: Path) -> tuple[CausalLM, bool]:
    """The model of `cfg` with the weights of `ckpt`; and whether the manifest says finite."""
    weights = ckpt / MODEL_WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {ckpt} has no {MODEL_WEIGHTS}; it is damaged, delete it")
    # The trainer's checkpoints carry a manifest: what is read must match its hashes.
    finite = True
    if (ckpt / MANIFEST_FILE).is_file():
        manifest = verify_checkpoint(
            ckpt, only=[n for n in (MODEL_WEIGHTS, STATE_FILE) if (ckpt / n).exists()]
        )
        finite = manifest.get("finite") is not False
    if cfg.hf is not None:
        from lossreweight.model.hf_model import build_hf_model

        model: CausalLM = build_hf_model(cfg, None, load_weights=False)
        load_model_weights(model, weights)
    else:
        from lossreweight.model.llama import LlamaModel

        vocab = cfg.vocab_size or _embedding_rows(weights)
        with torch.device("meta"):  # no random init: the checkpoint overwrites every weight
            model = LlamaModel(cfg.resolved(vocab))
        load_model_weights(model, weights, assign=True)
    return model, finite


def _all_finite(model: nn.Module) -> bool:
    return all(
        bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point()
    )


def _nonfinite(run_dir: Path, ckpt: Path) -> str:
    older = [c for c in complete_checkpoints(run_dir) if c.name < ckpt.name and is_good(c)]
    earlier = (
        f"the last good checkpoint before it is {older[-1]}"
        if older
        else "no earlier checkpoint of this run has finite weights"
    )
    return (
        f"{ckpt} holds non-finite weights (NaN or inf: the run diverged before it was saved), "
        f"so its scores would be meaningless; {earlier}"
    )


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
