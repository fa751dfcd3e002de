"""Checkpoints (lossreweight.train.checkpoint): the save cadence, a round trip of every
registered part, and pruning that deletes only what the trainer wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from train_utils import TINY_OVERRIDES

from lossreweight.train import load_config, train
from lossreweight.train.checkpoint import Checkpointer, Counters, _prune


# -- checkpointer -------------------------------------------------------------------------------
class _Part:
    def __init__(self) -> None:
        self.state = {"position": 0}

    def state_dict(self) -> dict[str, Any]:
        return dict(self.state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "position" not in state:
            raise ValueError("another kind of state")
        self.state = dict(state)


def _checkpointer(tmp_path: Path) -> tuple[Checkpointer, Counters, _Part, torch.nn.Module]:
    """A Checkpointer of the tiny model into `tmp_path` (a seed per call: other weights)."""
    from lossreweight.model import build_model
    from lossreweight.train.loss_module import PerSampleLoss
    from lossreweight.train.optim import build_optimizer
    from lossreweight.train.runtime import Runtime

    cfg = load_config("tiny", TINY_OVERRIDES)
    rt = Runtime(torch.device("cpu"), 0, 0, 1, None)
    torch.manual_seed(len(list(tmp_path.iterdir())))
    module = PerSampleLoss(build_model(cfg.model, 64), fused=False, autocast_dtype=None)
    counters, part = Counters(), _Part()
    ckpt = Checkpointer(
        tmp_path,
        rt,
        model=module,
        optimizer=build_optimizer(module, cfg.train, rt.device),
        counters=counters,
        parts={"loader": part, "reweighter": _Part()},
        every=3,
        keep=2,
    )
    return ckpt, counters, part, module


def test_checkpointer_cadence_and_round_trip(tmp_path: Path) -> None:
    def parts() -> tuple[Checkpointer, Counters, _Part, torch.nn.Module]:
        return _checkpointer(tmp_path)

    ckpt, counters, part, module = parts()
    assert [s for s in range(1, 10) if ckpt.due(s)] == [3, 6, 9]
    assert ckpt.due(4, last=True) and ckpt.due(4, stopping=True)
    assert ckpt.restore() is None  # nothing saved yet
    counters.step, counters.tokens, part.state = 3, 384, {"position": 12}
    ckpt.save()
    other, counters2, part2, module2 = parts()
    assert other.restore() is not None
    assert (counters2.step, counters2.tokens, part2.state) == (3, 384, {"position": 12})
    assert all(
        torch.equal(a, b)
        for a, b in zip(module.state_dict().values(), module2.state_dict().values(), strict=True)
    )


def _fake_checkpoint(root: Path, step: int, extra: str | None = None) -> Path:
    """A checkpoint folder as save_checkpoint leaves it: manifest-listed files, the manifest
    and COMPLETE (the hashes play no part in pruning)."""
    d = root / f"step_{step:08d}"
    d.mkdir(parents=True)
    files = ["model.safetensors", "optimizer.pt", "state.json", "rng_rank0.safetensors"]
    for name in files:
        (d / name).write_text("x")
    manifest = {"step": step, "finite": True, "files": {n: {} for n in files}}
    (d / "manifest.json").write_text(json.dumps(manifest))
    if extra:
        (d / extra).write_text("the user's notes")
    (d / "COMPLETE").write_text(f"{step}\n")
    return d


def test_prune_deletes_only_checkpoints_the_trainer_wrote(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    annotated = _fake_checkpoint(root, 1, extra="NOTES.md")  # a user added a file
    # A user's folder linked in under a checkpoint name: never followed, never deleted.
    mine = tmp_path / "mine"
    _fake_checkpoint(mine, 2)
    (root / "step_00000002").symlink_to(mine / "step_00000002")
    ours = _fake_checkpoint(root, 3)
    unlisted = _fake_checkpoint(root, 4)
    (unlisted / "manifest.json").unlink()  # no manifest: not provably ours
    (unlisted / "manifest.json").mkdir()
    backup = root / "step_00000005_backup"  # not a checkpoint name
    backup.mkdir()
    (backup / "COMPLETE").write_text("")
    (root / ".tmp-step_00000009").mkdir()  # a crash mid-save: ours, cleaned
    _fake_checkpoint(root, 6)
    _fake_checkpoint(root, 7)
    _prune(root, keep=2)
    assert not ours.exists() and not (root / ".tmp-step_00000009").exists()
    assert (annotated / "NOTES.md").read_text() == "the user's notes"
    assert (mine / "step_00000002" / "model.safetensors").is_file()
    assert (root / "step_00000002").is_symlink() and unlisted.is_dir() and backup.is_dir()
    assert (root / "step_00000006").is_dir() and (root / "step_00000007").is_dir()


def test_disk_full_in_the_middle_of_the_optimizer_file_is_one_error_and_no_debris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills after some bytes of optimizer.pt: torch.save would say RuntimeError
    ("unexpected pos"); the save says the OSError, keeps the previous checkpoint and leaves
    no temporary folder."""
    import errno

    import lossreweight.integrity as integrity
    from lossreweight.errors import CheckpointError

    ckpt, counters, _, _ = _checkpointer(tmp_path)
    counters.step = 3
    first = ckpt.save()
    real = integrity.HashingWriter.write

    def write(self: Any, data: Any) -> int:
        if self.path.name == "optimizer.pt" and self.bytes > 0:  # some bytes got through
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        return real(self, data)

    monkeypatch.setattr(integrity.HashingWriter, "write", write)
    counters.step = 6
    with pytest.raises(CheckpointError, match="No space left on device.*optimizer.pt"):
        ckpt.save()
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == [first.name]


def test_checkpoint_uses_safe_formats(tmp_path):
    train(load_config("tiny", TINY_OVERRIDES), tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000006"
    assert {p.name for p in ckpt.iterdir()} >= {
        "model.safetensors",
        "optimizer.pt",
        "state.json",
        "COMPLETE",
        "rng_rank0.safetensors",
    }
    torch.load(ckpt / "optimizer.pt", weights_only=True)  # loads without pickle of arbitrary code
