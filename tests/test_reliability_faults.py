"""Faults injected in-process: a full disk while saving or logging, an unwritable output
directory, non-finite losses and gradients, a re-run after the last checkpoint."""

from __future__ import annotations

import errno
import io
import json
import os
import pathlib
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from test_reliability_helpers import metrics, one_line, snapshot
from train_utils import TINY_OVERRIDES

import lossreweight.integrity as integrity
import lossreweight.train.checkpoint as checkpoint
from lossreweight.cli import main
from lossreweight.rundir import read_metrics
from lossreweight.train import load_config, train
from lossreweight.train.loss_module import PerSampleLoss
from lossreweight.train.metrics import MetricsLogger

# 6 steps, checkpoints at 2, 4, 6, evaluations at 3 and 6.
SHORT = [*TINY_OVERRIDES, "checkpoint.every=2"]


def train_main(out: Path, *extra: str) -> int:
    return main(["train", "tiny", "--out", str(out), *SHORT, *extra])


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("reference") / "run"
    train(load_config("tiny", SHORT), out)
    return metrics(out)


def enospc(path: object) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


# -- a full disk -------------------------------------------------------------------------------
# Each fault fails one write of checkpoint 4 (the file name says which), after checkpoint 2.
# The checkpoint's files go through integrity.HashingWriter; for them the write really goes to
# /dev/full, so the error is the operating system's own ENOSPC (through torch.save too).
DEV_FULL = ("model file", "optimizer file", "state file", "rng file", "manifest")
SAVE_FAULTS = {
    "model file": (integrity, "open", "step_00000004/model.safetensors"),
    "optimizer file": (integrity, "open", "step_00000004/optimizer.pt"),
    "state file": (integrity, "open", "step_00000004/state.json"),
    "rng file": (integrity, "open", "step_00000004/rng_rank0.safetensors"),
    "manifest": (integrity, "open", "step_00000004/manifest.json"),
    "COMPLETE marker": (pathlib.Path, "write_text", "step_00000004/COMPLETE"),
    "rename into place": (checkpoint.os, "replace", "checkpoints/step_00000004"),
}


def full_disk() -> Any:
    """A file every write to which fails with ENOSPC: /dev/full where the OS has it."""
    if Path("/dev/full").exists() and stat.S_ISCHR(os.stat("/dev/full").st_mode):
        return open("/dev/full", "wb", buffering=0)  # noqa: SIM115 - closed by the writer

    class Full(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return Full()


@pytest.mark.parametrize("where", list(SAVE_FAULTS))
def test_disk_full_while_saving_keeps_previous_checkpoint(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    reference: list[dict[str, Any]],
    where: str,
) -> None:
    owner, name, needle = SAVE_FAULTS[where]
    real = getattr(owner, name, open)
    out = tmp_path / "run"
    before: dict[str, str] = {}

    def failing(*args: Any, **kwargs: Any) -> Any:
        paths = [
            str(a) for a in args if isinstance(a, os.PathLike) or (isinstance(a, str) and "/" in a)
        ]
        if any(p.endswith(needle) for p in paths):
            before.update(snapshot(out / "checkpoints" / "step_00000002"))
            if where in DEV_FULL:
                return full_disk()
            raise enospc(paths[-1])
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing, raising=False)
    assert train_main(out) == 2
    err = one_line(capsys.readouterr().err)
    assert "could not write checkpoint at step 4" in err and "No space left on device" in err
    assert "step_00000002 is intact" in err and "re-run the same command" in err
    assert needle.rsplit("/", 1)[1] in err  # names the file that could not be written
    assert before and snapshot(out / "checkpoints" / "step_00000002") == before
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000002"]  # no debris
    monkeypatch.setattr(owner, name, real, raising=False)  # space freed: the same command resumes
    assert train_main(out) == 0
    assert metrics(out) == reference


def test_disk_full_while_logging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = MetricsLogger.log

    def log(self: MetricsLogger, record: dict[str, Any]) -> None:
        if record["step"] == 3:
            raise enospc(self.path)
        real(self, record)

    monkeypatch.setattr(MetricsLogger, "log", log)
    assert train_main(tmp_path / "run") == 2
    err = one_line(capsys.readouterr().err)
    assert "No space left on device: " in err and "metrics.jsonl" in err and "step_00000002" in err


def test_unwritable_output_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert train_main(blocker / "run") == 2  # its parent is a file: mkdir fails (as root too)
    assert "Not a directory" in one_line(capsys.readouterr().err)
    assert train_main(blocker) == 2
    assert "is not a directory" in one_line(capsys.readouterr().err)
    assert blocker.read_text() == "x"


def test_out_of_memory_says_what_to_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real, calls = PerSampleLoss.forward, [0]

    def forward(self: PerSampleLoss, input_ids: torch.Tensor) -> torch.Tensor:
        calls[0] += self.training
        if calls[0] == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(self, input_ids)

    monkeypatch.setattr(PerSampleLoss, "forward", forward)
    assert train_main(tmp_path / "run") == 2
    err = one_line(capsys.readouterr().err)
    assert (
        "out of memory during step 3" in err
        and "train.batch_size" in err
        and "step_00000002" in err
    )


# -- non-finite losses and gradients -----------------------------------------------------------
def poison(monkeypatch: pytest.MonkeyPatch, steps: set[int], how: str) -> None:
    """Make training forward passes of the given steps (1-based) non-finite:
    `one`: sample 0's loss is NaN; `all`: every loss is NaN (a NaN storm);
    `grad`: the losses stay finite but their gradient is NaN."""
    real = PerSampleLoss.forward
    calls = [0]

    def forward(self: PerSampleLoss, input_ids: torch.Tensor) -> torch.Tensor:
        losses = real(self, input_ids)
        if not self.training:
            return losses  # evaluation stays clean
        calls[0] += 1
        if calls[0] not in steps:
            return losses
        if how == "grad":
            return losses + torch.sqrt(losses * 0.0)  # value + 0; d/dl sqrt(0) = inf * 0 = NaN
        bad = torch.zeros_like(losses, dtype=torch.bool)
        bad[: 1 if how == "one" else None] = True
        return torch.where(bad, torch.full_like(losses, float("nan")), losses)

    monkeypatch.setattr(PerSampleLoss, "forward", forward)


def test_nan_samples_get_zero_weight_and_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison(monkeypatch, set(range(1, 7)), "one")
    result = train(load_config("tiny", SHORT), tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    for r in rows:
        assert (
            r["reweight/num_invalid"] == 1
            and r["reweight/num_samples"] == 3
            and not r["train/skipped"]
        )
        shares = [v for k, v in r.items() if k.startswith("reweight/domain_weight_share/")]
        assert sum(shares) == pytest.approx(1.0, abs=1e-5)  # the 3 valid ones
        assert all(
            r[k] is not None for k in ("train/loss", "train/weighted_loss", "train/grad_norm")
        )
    assert rows[0]["train/loss"] != rows[-1]["train/loss"]  # it trains
    assert torch.isfinite(torch.tensor(result.final_eval["eval/loss"]))


@pytest.mark.parametrize("how", ["all", "grad"], ids=["nan-loss", "nan-gradient"])
def test_skipped_step_leaves_params_and_adamw_state_bitwise_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    poison(monkeypatch, {4}, how)
    out = tmp_path / "run"
    train(load_config("tiny", [*SHORT, "train.max_steps=4", "checkpoint.every=1"]), out)
    assert [r["train/skipped"] for r in read_metrics(out)] == [False, False, False, True]
    before, after = (out / "checkpoints" / f"step_0000000{s}" for s in (3, 4))
    m3, m4 = load_file(before / "model.safetensors"), load_file(after / "model.safetensors")
    assert m3.keys() == m4.keys() and all(torch.equal(m3[k], m4[k]) for k in m3)
    o3, o4 = (torch.load(d / "optimizer.pt", weights_only=True)["state"] for d in (before, after))
    assert o3.keys() == o4.keys() and o3  # lr in param_groups follows the schedule: state only
    for k in o3:
        assert o3[k].keys() == o4[k].keys()
        assert all(torch.equal(o3[k][n], o4[k][n]) for n in o3[k])  # exp_avg, exp_avg_sq, step


def test_nan_storm_stops_with_exit_3_and_resumes_after_lowering_lr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    poison(monkeypatch, {3, 4, 5, 6}, "all")
    assert train_main(out, "train.max_nonfinite_steps=2") == 3
    err = one_line(capsys.readouterr().err)
    assert "2 non-finite steps in a row" in err and "last good checkpoint: " in err
    assert err.split("last good checkpoint: ")[1].startswith(
        str(out / "checkpoints" / "step_00000002")
    )
    assert [r["train/skipped"] for r in read_metrics(out)] == [False, False, True, True]
    monkeypatch.undo()
    # The error's advice works: a lower lr is accepted on resume (with a note).
    assert train_main(out, "train.max_nonfinite_steps=2", "train.lr=1e-3") == 0
    assert "resuming" in capsys.readouterr().err
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6] and not any(
        r["train/skipped"] for r in rows
    )


# -- re-running a finished command -------------------------------------------------------------
def test_rerun_after_final_checkpoint_restores_final_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert train_main(out) == 0
    final = json.loads((out / "final.json").read_text())
    (out / "final.json").unlink()  # as if killed between the last checkpoint and final.json
    rows = read_metrics(out)
    assert train_main(out) == 0
    assert json.loads((out / "final.json").read_text()) == final
    assert read_metrics(out) == rows  # nothing trained or logged twice
    assert capsys.readouterr().out.count("done: 6 steps") == 2


@pytest.mark.parametrize("name", ["resolved_config.json", "data.json", "tokenizer"])
def test_disk_full_while_writing_the_run_files_leaves_no_debris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    real_write, real_copy = pathlib.Path.write_text, shutil.copytree

    def write_text(self: pathlib.Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == f"{name}.tmp":
            real_write(self, "{half", **kwargs)  # part of it reached the disk
            raise enospc(self)
        return real_write(self, *args, **kwargs)

    def copytree(src: Any, dst: Any, **kwargs: Any) -> Any:
        real_copy(src, dst, **kwargs)
        if name == "tokenizer" and str(dst).endswith("tokenizer.tmp"):
            raise enospc(dst)  # the disk filled up at the copy's last file

    monkeypatch.setattr(pathlib.Path, "write_text", write_text)
    monkeypatch.setattr(shutil, "copytree", copytree)
    out = tmp_path / "run"
    assert train_main(out) == 2
    err = one_line(capsys.readouterr().err)
    assert "No space left on device" in err and "free disk space" in err
    # Only what was written whole stays (a later re-run goes on from there); no .tmp debris.
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert not [n for n in left if n.endswith(".tmp")], left
    if name == "resolved_config.json":
        assert not out.exists()  # nothing marked it as a run: the folder we created went too
    monkeypatch.undo()
    assert train_main(out) == 0  # space freed: the same command works
