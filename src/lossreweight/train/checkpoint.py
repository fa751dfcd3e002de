"""Checkpoints, whole: when to save, what a checkpoint holds, writing it atomically, restoring
it, pruning old ones and verifying them (torchtitan's CheckpointManager, in one module).

`Checkpointer` decides the cadence and gathers the state: the model and optimizer (tensor
files) and, in state.json, each registered part's `state_dict()` under its name plus the
counters at the top. A checkpoint is a directory `checkpoints/step_XXXXXXXX/` with
  model.safetensors     the full (unsharded) model state
  optimizer.pt          the optimizer state, read back with torch.load(weights_only=True)
  rng_rankK.safetensors each rank's torch RNG states
  state.json            step, tokens, loader position, reweighter config, config hash
  manifest.json         every file's sha256 and size, and whether the weights were finite
  COMPLETE              written last
It is written to a temporary directory that is renamed into place only when whole, so a
crash (or a full disk) while saving never leaves a broken newest checkpoint; older ones are
deleted only after the new one is complete, and only when they hold exactly the files the
trainer wrote (a folder a user made or added to is never deleted). Files are hashed as they
are written (no second read) and checked against the manifest on load (lossreweight.integrity).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from lossreweight.errors import CheckpointError, ConfigError
from lossreweight.integrity import (
    HashingWriter,
    damaged_advice,
    last_good_checkpoint,
    nonfinite_message,
    verify_checkpoint,
    write_manifest,
)
from lossreweight.model.load import fill_tied_aliases
from lossreweight.rundir import (
    CHECKPOINTS_DIR,
    COMPLETE_MARKER,
    MANIFEST_FILE,
    MODEL_WEIGHTS,
    OPTIMIZER_FILE,
    STATE_FILE,
    checkpoint_dir_name,
    complete_checkpoints,
    find_latest_checkpoint,
    read_json_object,
)
from lossreweight.train.runtime import Runtime, fault_point

# The trainer checkpoints its PerSampleLoss module; files hold the bare model's names so that
# export and `load_run_model` read them directly.
MODEL_PREFIX = "model."
FORMAT_VERSION = 1

# safetensors' names of the dtypes a checkpoint holds.
_ST_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
    """Write `tensors` (CPU) in the safetensors format, hashing as it goes; its manifest entry.

    Our own writer rather than safetensors.torch.save_file: the bytes are hashed as they go
    out (no second read of the file for the manifest), and a failed write (a full disk) is an
    OSError naming the file. The result is a standard file that safetensors loads."""
    header: dict[str, Any] = {}
    offset = 0
    for name, t in tensors.items():
        if t.dtype not in _ST_DTYPES:
            raise TypeError(f"cannot checkpoint {name}: dtype {t.dtype}")
        size = t.numel() * t.element_size()
        header[name] = {
            "dtype": _ST_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with HashingWriter(path) as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for t in tensors.values():
            if t.numel():  # raw little-endian bytes, as safetensors stores them
                f.write(
                    memoryview(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
                )
        return f.close()


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    rt: Runtime,
    keep: int = 2,
) -> Path:
    """Collective under torch.distributed: every rank calls it; rank 0 writes the files.

    Any write failure (disk full, read-only, ...) on any rank makes every rank raise the same
    CheckpointError, with the newest complete checkpoint untouched."""
    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd = {
        k.removeprefix(MODEL_PREFIX): v
        for k, v in get_model_state_dict(model, options=full).items()
    }
    optim_sd = get_optimizer_state_dict(model, optimizer, options=full)
    root = run_dir / CHECKPOINTS_DIR
    final = root / checkpoint_dir_name(step)
    tmp = root / f".tmp-{checkpoint_dir_name(step)}"
    rng = {"cpu": torch.get_rng_state()}
    if rt.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(rt.device)

    hashes: dict[str, dict[str, Any]] = {}  # rank 0's files, hashed as they are written

    def write_main() -> None:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        # Tied weights share storage; safetensors wants each tensor once.
        hashes[MODEL_WEIGHTS] = save_safetensors(_dedupe(model_sd), tmp / MODEL_WEIGHTS)
        fault_point("save", step, rt.rank)  # test-only: a crash mid-write
        with HashingWriter(tmp / OPTIMIZER_FILE) as f:
            _torch_save(optim_sd, f)
            hashes[OPTIMIZER_FILE] = f.close()
        with HashingWriter(tmp / STATE_FILE) as f:
            f.write(json.dumps({"format": FORMAT_VERSION, **state}, indent=1).encode())
            hashes[STATE_FILE] = f.close()

    def write_rng() -> None:  # every rank, into the temporary directory
        save_safetensors(
            {k: v.contiguous() for k, v in rng.items()}, tmp / f"rng_rank{rt.rank}.safetensors"
        )

    def publish() -> None:
        # Only finite weights make a good checkpoint (one to go back to after a divergence).
        write_manifest(tmp, step, finite=_all_finite(model_sd), known=hashes)
        # Every file above went through HashingWriter, which fsyncs it on close.
        (tmp / COMPLETE_MARKER).write_text(f"{step}\n")
        fsync_file(tmp / COMPLETE_MARKER)
        _replace_dir(tmp, final)
        fsync_dir(root)

    error = _attempt(write_main, rt.is_main, rt)
    error = error or _attempt(write_rng, True, rt)
    error = error or _attempt(publish, rt.is_main, rt)
    if error:
        if rt.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        latest = find_latest_checkpoint(run_dir)
        kept = (
            f"the previous checkpoint {latest} is intact"
            if latest
            else "no earlier checkpoint exists"
        )
        raise CheckpointError(
            f"could not write checkpoint at step {step} in {root}: {error}; {kept}; "
            "free disk space or fix permissions and re-run the same command to resume"
        )
    if rt.is_main:
        _prune(root, keep)
    rt.barrier()
    return final


class _KeepsWriteError:
    """A file that remembers the OSError its write raised: torch.save turns an error in the
    middle of its zip stream into RuntimeError ("unexpected pos"), losing the ENOSPC."""

    def __init__(self, file: Any) -> None:
        self.file, self.error = file, None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()


def _torch_save(obj: Any, file: Any) -> None:
    """torch.save into a Python file; a failed write (a full disk) is that write's OSError,
    whether the disk filled at the first byte or in the middle of the stream."""
    keeper = _KeepsWriteError(file)
    try:
        torch.save(obj, keeper)
    except RuntimeError:
        if keeper.error is None:
            raise
        raise keeper.error from None


def _attempt(write: Any, here: bool, rt: Runtime) -> str | None:
    """Run `write` where `here`; every rank learns whether all of them succeeded (the error
    text, or None), so no rank waits forever for one that failed."""
    error = None
    if here:
        try:
            write()
        except OSError as exc:
            error = f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
    if rt.distributed:
        failed = torch.tensor([0.0 if error is None else 1.0], device=rt.device)
        dist.all_reduce(failed, op=dist.ReduceOp.MAX)
        if failed.item() and error is None:
            error = "another rank failed to write its part"
    return error


def _replace_dir(tmp: Path, final: Path) -> None:
    """Rename `tmp` to `final`; an existing `final` (a re-save of the same step) is moved
    aside first and put back if the rename fails."""
    if not final.exists():
        os.replace(tmp, final)
        return
    old = final.with_name(f".old-{final.name}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except OSError:
        os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _all_finite(sd: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in sd.values() if t.is_floating_point())


def _dedupe(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    seen: dict[int, str] = {}
    out = {}
    for k, v in sd.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        if ptr in seen and ptr != -1:
            continue
        seen[ptr] = k
        out[k] = v.contiguous()
    return out


def _prune(root: Path, keep: int) -> None:
    """Delete all but the newest `keep` complete checkpoints (and the last good one), and the
    leftovers of a crash mid-save or mid-delete; never a folder the trainer did not write."""
    complete = complete_checkpoints(root.parent)
    good = last_good_checkpoint(root.parent)  # never pruned: the one to go back to after NaNs
    for d in complete[:-keep] if keep > 0 else []:
        if d == good or not _ours(d):
            continue
        # Renamed first, so a crash mid-delete never leaves a half checkpoint named step_*.
        trash = d.with_name(f".old-{d.name}")
        with contextlib.suppress(OSError):
            os.replace(d, trash)
            shutil.rmtree(trash, ignore_errors=True)
    for pattern in (".tmp-step_*", ".old-step_*"):  # names only the trainer gives
        for d in root.glob(pattern):
            if d.is_dir() and not d.is_symlink():
                shutil.rmtree(d, ignore_errors=True)


def _ours(ckpt: Path) -> bool:
    """Does `ckpt` hold exactly what `save_checkpoint` wrote: a real folder (not a link) of
    the files its manifest lists, the manifest and COMPLETE? A checkpoint a user copied by
    hand, linked in or added notes to is left alone."""
    if ckpt.is_symlink() or not ckpt.is_dir():
        return False
    try:
        listed = set(json.loads((ckpt / MANIFEST_FILE).read_text())["files"])
        present = {p.name for p in ckpt.iterdir()}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return present == listed | {MANIFEST_FILE, COMPLETE_MARKER}


def read_state(ckpt: Path) -> dict[str, Any]:
    """state.json, checked: a damaged or edited file is a CheckpointError, not a crash later."""
    file = ckpt / STATE_FILE
    state = read_json_object(
        file, what="a checkpoint state", fix=damaged_advice(ckpt), error=CheckpointError
    )
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{ckpt} was written by another version of lossreweight "
            f"(format {state.get('format')!r}); "
            "train into a new output directory"
        )
    m = re.fullmatch(r"step_(\d+)", ckpt.name)
    problems = [
        f"{key} is {state.get(key)!r}"
        for key in ("step", "tokens")
        if not (
            isinstance(state.get(key), int)
            and not isinstance(state.get(key), bool)
            and state[key] >= 0
        )
    ] + [
        f"{key} is not a mapping"
        for key in ("loader", "reweighter")
        if not isinstance(state.get(key), dict)
    ]
    if not problems and m and int(m.group(1)) != state["step"]:
        problems.append(f"step {state['step']} does not match the directory name")
    if problems:
        raise CheckpointError(
            f"{file} is not a valid checkpoint state ({'; '.join(problems)}); "
            f"{damaged_advice(ckpt)}"
        )
    return state


def load_checkpoint(
    ckpt: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rt: Runtime
) -> dict[str, Any]:
    """Restore model, optimizer and this rank's RNG; return the saved trainer state.

    Every file is first checked against the checkpoint's manifest (sha256), and a checkpoint of
    non-finite weights is refused. Only safe formats are read (JSON, safetensors, torch.load
    with weights_only=True): a tampered file is rejected with a CheckpointError, never executed."""
    _verify(ckpt, rt)
    state = read_state(ckpt)
    model_sd = _load_tensors(ckpt / MODEL_WEIGHTS, ckpt)
    # Validate names and shapes against the model first, for a one-line error.
    inner = _unwrapped(model).model
    check_compatible(inner, model_sd, ckpt)
    full = StateDictOptions(full_state_dict=True, strict=False)
    model_sd = {MODEL_PREFIX + k: v for k, v in fill_tied_aliases(inner, model_sd).items()}
    try:
        optim_sd = torch.load(ckpt / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(
            f"cannot read {ckpt / OPTIMIZER_FILE}: {_load_failure(exc)}; {damaged_advice(ckpt)}"
        ) from None
    rng_file = ckpt / f"rng_rank{rt.rank}.safetensors"
    rng = _load_tensors(rng_file, ckpt) if rng_file.is_file() else {}
    set_model_state_dict(model, model_sd, options=full)
    try:
        set_optimizer_state_dict(
            model, optimizer, optim_sd, options=StateDictOptions(full_state_dict=True)
        )
    except Exception as exc:  # noqa: BLE001 - a well-formed file of the wrong content
        raise CheckpointError(
            f"{ckpt / OPTIMIZER_FILE} does not match this model/optimizer: "
            f"{' '.join(str(exc).split())[:160]}; {damaged_advice(ckpt)}"
        ) from None
    try:
        if "cpu" in rng:
            torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and rt.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], rt.device)
    except (RuntimeError, TypeError) as exc:
        raise CheckpointError(
            f"{rng_file} holds no valid RNG state ({exc}); {damaged_advice(ckpt)}"
        ) from None
    return state


def _verify(ckpt: Path, rt: Runtime) -> None:
    """Rank 0 checks the hashes and the finiteness; every rank learns the outcome, so all
    raise the same kind of error and none waits for a rank that refused."""
    error: CheckpointError | None = None
    if rt.is_main:
        try:
            if not verify_checkpoint(ckpt)["finite"]:
                raise CheckpointError(nonfinite_message(ckpt))
        except CheckpointError as exc:
            error = exc
    if rt.distributed:
        failed = torch.tensor([0.0 if error is None else 1.0], device=rt.device)
        dist.all_reduce(failed, op=dist.ReduceOp.MAX)
        if failed.item() and error is None:
            error = CheckpointError(
                f"rank 0 refused checkpoint {ckpt} (see its error); {damaged_advice(ckpt)}"
            )
    if error is not None:
        raise error


def _load_failure(exc: Exception) -> str:
    """torch.load's error in a few words (its weights_only message is a page long)."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())
    if "Weights only load failed" in text:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        culprit = f" ({found.group(1)})" if found else ""
        return (
            f"it holds Python objects beyond tensors{culprit} whose loading could run code; refused"
        )
    return text[:160]


def _load_tensors(file: Path, ckpt: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except (
        OSError,
        ValueError,
        RuntimeError,
        SafetensorError,
    ) as exc:  # safetensors rejects tampered headers
        raise CheckpointError(
            f"cannot read {file}: {' '.join(str(exc).split())[:160]}; {damaged_advice(ckpt)}"
        ) from None


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def check_compatible(model: torch.nn.Module, sd: dict[str, torch.Tensor], ckpt: Path) -> None:
    sd = fill_tied_aliases(model, sd)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k])]
    if missing or unexpected or wrong:
        detail = (
            f"missing {missing[:2]}"
            if missing
            else f"unexpected {unexpected[:2]}"
            if unexpected
            else f"{wrong[0]} is {tuple(sd[wrong[0]].shape)} in the checkpoint "
            f"but {tuple(expected[wrong[0]])} in the model"
        )
        raise CheckpointError(
            f"checkpoint {ckpt} is from another model shape ({detail}); use the config it was "
            "trained with, or a new output directory"
        )


# -- the manager: cadence, state registry, restore ----------------------------------------
class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _part_state(state: dict[str, Any], name: str, part: Stateful) -> dict[str, Any]:
    """A part's saved state. A part added after a checkpoint was written (it says so with
    `absent_in_older_checkpoints = True`, e.g. the burn-in) restores from {} there."""
    if name not in state and getattr(part, "absent_in_older_checkpoints", False):
        return {}
    return state[name]


@dataclass
class Counters:
    """Where training stands: optimizer steps taken and tokens consumed (all ranks)."""

    step: int = 0
    tokens: int = 0

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "tokens": self.tokens}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.tokens = state["step"], state["tokens"]


class Checkpointer:
    """Saves every `every` steps (0: only at the end), at the last step and on a stop request;
    keeps the newest `keep`; restores the newest complete checkpoint of `run_dir`."""

    def __init__(
        self,
        run_dir: Path,
        rt: Runtime,
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        counters: Counters,
        parts: dict[str, Stateful],
        every: int,
        keep: int,
    ) -> None:
        self.run_dir, self.rt = Path(run_dir), rt
        self.model, self.optimizer, self.counters, self.parts = model, optimizer, counters, parts
        self.every, self.keep = every, keep

    def due(self, step: int, *, last: bool = False, stopping: bool = False) -> bool:
        return last or stopping or bool(self.every and step % self.every == 0)

    def save(self) -> Path:
        """Collective under torch.distributed: every rank calls it at the same step."""
        state = {
            **self.counters.state_dict(),
            **{name: p.state_dict() for name, p in self.parts.items()},
        }
        return save_checkpoint(
            self.run_dir,
            self.counters.step,
            self.model,
            self.optimizer,
            state,
            self.rt,
            keep=self.keep,
        )

    def restore(self) -> Path | None:
        """Load the newest complete checkpoint into every registered part.

        Returns its path, or None when there is none.
        """
        latest = find_latest_checkpoint(self.run_dir)
        if latest is None:
            return None
        state = load_checkpoint(latest, self.model, self.optimizer, self.rt)
        self.counters.load_state_dict(state)
        for name, part in self.parts.items():
            try:
                part.load_state_dict(_part_state(state, name, part))
            except ValueError as exc:  # e.g. a reweighter saved with other settings
                raise ConfigError(str(exc)) from None
        return latest
