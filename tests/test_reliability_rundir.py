"""Red-team cases of issue 13 for the run directory: one writer per run, exports that never
destroy results, checkpoints that prove their integrity, data that is fingerprinted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from test_reliability_helpers import (
    child_env,
    logged_steps,
    one_line,
    our_frames,
    sigkill,
    snapshot,
    start,
    train_cmd,
    wait_for,
)
from train_utils import TINY_OVERRIDES

from lossreweight.cli import main
from lossreweight.integrity import describe_last_good, last_good_checkpoint, verify_checkpoint
from lossreweight.locking import DirectoryLock
from lossreweight.rundir import find_latest_checkpoint
from lossreweight.train import load_config, train
from lossreweight.train.loss_module import PerSampleLoss

SHORT = [*TINY_OVERRIDES, "checkpoint.every=2"]  # 6 steps, checkpoints 2, 4, 6


def train_main(out: Path, *extra: str) -> int:
    return main(["train", "tiny", "--out", str(out), *SHORT, *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 6-step run (checkpoints 4 and 6 kept); tests work on copies of it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(load_config("tiny", SHORT), out)
    return out


@pytest.fixture
def run(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


# -- one writer per run directory ---------------------------------------------------------------
@pytest.mark.xdist_group("reliability")
def test_second_trainer_on_one_out_exits_2_naming_the_holder_and_a_stale_lock_never_blocks(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    first = start(out)
    wait_for(lambda: logged_steps(out) != [], first)
    first.send_signal(signal.SIGSTOP)  # holds the lock, mid-run
    try:
        # Other settings, as in the report: they must not get in, let alone mix their records.
        second = subprocess.run(
            train_cmd(out, "reweight.temperature=2.0"),
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2
        err = one_line(second.stderr)
        assert (
            f"run directory {out} is in use by pid {first.pid}" in err
            and f"train tiny --out {out}" in err
        )
    finally:
        sigkill(first)  # killed -9 while holding the lock: the lock dies with it
    assert (out / ".lock").exists()
    third = subprocess.run(
        train_cmd(out), env=child_env(), capture_output=True, text=True, timeout=120
    )
    assert third.returncode == 0, third.stderr[-2000:]
    steps = logged_steps(out)
    assert steps == sorted(set(steps)) and steps[-1] == 16  # no duplicate or mixed records
    assert json.loads((out / "resolved_config.json").read_text())["reweight"]["temperature"] != 2.0


def test_lock_held_in_process_is_refused_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    with DirectoryLock(out, what="run directory"):
        before = snapshot(tmp_path)
        assert train_main(out) == 2
        err = one_line(capsys.readouterr().err)
        assert f"in use by pid {os.getpid()}" in err and "wait for it to finish" in err
        assert snapshot(tmp_path) == before


def test_failed_setup_leaves_an_empty_out_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()  # the user made it: it stays, empty (no .lock left behind)
    assert (
        train_main(out, "train.lrr=1") == 2 and "did you mean train.lr" in capsys.readouterr().err
    )
    assert train_main(out, f"data.sources=[{tmp_path / 'none'}]") == 2
    assert list(out.iterdir()) == []
    assert train_main(tmp_path / "new", f"data.sources=[{tmp_path / 'none'}]") == 2
    assert not (tmp_path / "new").exists()
    deep = tmp_path / "a" / "b" / "run"  # parents made for the lock go again too
    assert train_main(deep, f"data.sources=[{tmp_path / 'none'}]") == 2
    assert not (tmp_path / "a").exists()


def test_a_run_dir_holding_only_a_stale_lock_is_a_new_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text('{"pid": 1, "host": "gone"}')  # a holder killed before writing
    assert train_main(out, "train.max_steps=2") == 0
    assert logged_steps(out) == [1, 2]


# -- export-hf --force never destroys results ---------------------------------------------------
def test_export_force_never_reaches_a_runs_checkpoints(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("transformers")
    before = snapshot(run)
    other = tmp_path / "other-run"
    shutil.copytree(run, other)
    stranger = tmp_path / "mine"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("x")
    cases = {
        run / "checkpoints": "inside the checkpoints of the run",
        run / "checkpoints" / "step_00000006": "inside the checkpoints of the run",
        other: "a training run directory",
        stranger: "was not created by export-hf",
        run: "would replace the run directory",
    }
    for target, message in cases.items():
        assert main(["export-hf", str(run), str(target), "--force"]) == 2
        assert message in one_line(capsys.readouterr().err), target
    assert snapshot(run) == before and (stranger / "notes.txt").read_text() == "x"
    # An export export-hf made itself is replaced with --force, even inside the run directory.
    assert main(["export-hf", str(run), str(run / "hf")]) == 0
    assert main(["export-hf", str(run), str(run / "hf"), "--force"]) == 0
    assert (run / "hf" / "model.safetensors").is_file()
    assert find_latest_checkpoint(run) == run / "checkpoints" / "step_00000006"


# -- checkpoints that prove their integrity -----------------------------------------------------
def flip_bit(file: Path, offset_from_end: int = 100) -> None:
    data = bytearray(file.read_bytes())
    data[-offset_from_end] ^= 0x01  # tensor data (the end of the file), not the header
    file.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.pt", "rng_rank0.safetensors"])
def test_a_flipped_bit_is_a_one_line_error_naming_the_file(
    run: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    ckpt = run / "checkpoints" / "step_00000006"
    flip_bit(ckpt / name)
    before = snapshot(run)
    assert train_main(run, "train.max_steps=8") == 2
    err = one_line(capsys.readouterr().err)
    assert f"{ckpt / name} changed since it was saved" in err
    assert (
        f"delete {ckpt} (a re-run then resumes from {run / 'checkpoints' / 'step_00000004'})" in err
    )
    assert snapshot(run) == before


def test_a_flipped_bit_in_the_weights_stops_eval_and_export(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("transformers")
    flip_bit(run / "checkpoints" / "step_00000006" / "model.safetensors")
    assert main(["export-hf", str(run), str(tmp_path / "hf")]) == 2
    assert "model.safetensors changed since it was saved" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "hf").exists()
    assert main(["eval", str(run)]) == 2
    assert "model.safetensors changed since it was saved" in one_line(capsys.readouterr().err)


def test_an_edited_state_file_is_refused(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A valid edit (another data position) that state.json's own checks cannot see.
    state_file = run / "checkpoints" / "step_00000006" / "state.json"
    state = json.loads(state_file.read_text())
    state["tokens"] += 1
    state_file.write_text(json.dumps(state, indent=1))
    assert train_main(run, "train.max_steps=8") == 2
    assert f"{state_file} changed since it was saved" in one_line(capsys.readouterr().err)


def test_a_missing_or_damaged_manifest_is_refused(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = run / "checkpoints" / "step_00000006" / "manifest.json"
    manifest.write_text("{not json")
    assert train_main(run, "train.max_steps=8") == 2
    assert "cannot read" in one_line(capsys.readouterr().err)
    manifest.unlink()
    assert train_main(run, "train.max_steps=8") == 2
    assert "has no manifest.json" in one_line(capsys.readouterr().err)


def test_manifest_lists_every_file_and_finite_weights(finished: Path) -> None:
    ckpt = finished / "checkpoints" / "step_00000006"
    manifest = verify_checkpoint(ckpt)
    assert manifest["finite"] is True and manifest["step"] == 6
    assert sorted(manifest["files"]) == [
        "model.safetensors",
        "optimizer.pt",
        "rng_rank0.safetensors",
        "state.json",
    ]
    assert last_good_checkpoint(finished) == ckpt


def test_a_checkpoint_of_nan_weights_is_never_called_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real, calls = PerSampleLoss.forward, [0]

    def forward(self: PerSampleLoss, input_ids: torch.Tensor) -> Any:
        calls[0] += self.training
        if self.training and calls[0] == 3:  # step 3's update made a weight NaN
            with torch.no_grad():
                next(self.parameters()).fill_(float("nan"))
        return real(self, input_ids)

    monkeypatch.setattr(PerSampleLoss, "forward", forward)
    out = tmp_path / "run"
    assert train_main(out, "train.max_nonfinite_steps=3", "checkpoint.every=1") == 3
    err = one_line(capsys.readouterr().err)
    good = out / "checkpoints" / "step_00000002"
    assert f"last good checkpoint: {good} (delete the newer step_00000003" in err
    assert "their weights are not finite" in err
    assert last_good_checkpoint(out) == good and find_latest_checkpoint(out) != good
    monkeypatch.undo()
    # Resuming from a NaN checkpoint is refused, and says where a re-run goes once it is deleted.
    assert train_main(out, "train.lr=1e-3", "checkpoint.every=1") == 2
    note, err = capsys.readouterr().err.splitlines(keepends=True)
    assert note.startswith("lossreweight: note: resuming") and "train.lr" in note
    err = one_line(err)
    assert "holds non-finite weights" in err and "delete step_00000003, step_00000004" in err
    assert f"resumes from the last good checkpoint {good}" in err
    for ckpt in (out / "checkpoints").iterdir():
        if ckpt.name > good.name:
            shutil.rmtree(ckpt)
    assert describe_last_good(out) == str(good)
    assert train_main(out, "train.lr=1e-3", "checkpoint.every=1") == 0


# -- the data a run trains on -------------------------------------------------------------------
def write_corpus(root: Path, words: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for domain, seed in (("alpha", 1), ("beta", 2)):
        g = torch.Generator().manual_seed(seed)
        lines = [
            json.dumps(
                {
                    "text": " ".join(
                        words.split()[int(i)] for i in torch.randint(0, 8, (60,), generator=g)
                    )
                }
            )
            for _ in range(80)
        ]
        (root / f"{domain}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_resuming_on_changed_data_says_the_data_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = write_corpus(tmp_path / "corpus", "a b c d e f g h")
    out = tmp_path / "run"
    data = [f"data.sources=[{corpus}]", f"data.cache_dir={tmp_path / 'cache'}"]
    assert train_main(out, *data, "train.max_steps=2") == 0
    fingerprint = json.loads((out / "data.json").read_text())["fingerprint"]
    assert len(fingerprint) == 64
    write_corpus(corpus, "i j k l m n o p")  # the same files, other text
    before = snapshot(out)
    assert train_main(out, *data, "train.max_steps=4") == 2
    err = one_line(capsys.readouterr().err)
    assert (
        f"{out} was trained on other data" in err
        and "restore the data" in err
        and "new --out" in err
    )
    assert "other settings" not in err  # not blamed on the config (the vocabulary changed too)
    assert snapshot(out) == before
    write_corpus(corpus, "a b c d e f g h")  # the data it was trained on, back: it resumes
    assert train_main(out, *data, "train.max_steps=4") == 0
    assert logged_steps(out) == [1, 2, 3, 4]


# -- the suite runs from a clone in any folder --------------------------------------------------
def test_our_frames_match_the_package_path_not_the_folder_name() -> None:
    import lossreweight

    pkg = Path(lossreweight.__file__).resolve().parent
    clone = "/home/me/lossreweight"  # git's default folder name for a clone of the project
    err = "\n".join([
        "Traceback (most recent call last):",
        f'  File "{clone}/.venv/lib/python3.11/site-packages/torch/distributed/run.py", '
        "line 1, in main",
        f'  File "{clone}/tests/test_x.py", line 2, in test',
        f'  File "{sys.prefix}/lib/lossreweight_tools.py", line 3, in f',
    ])  # fmt: skip
    assert our_frames(err) == []
    ours = f'  File "{pkg / "train" / "loop.py"}", line 4, in run'
    assert our_frames(err + "\n" + ours) == [ours]


# -- divergence advice --------------------------------------------------------------------------
def test_weights_that_break_on_finite_losses_get_reweighting_advice_not_lr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What an underflowing temperature did (every step skipped, and the advice was "lower
    # train.lr"): finite per-sample losses, a non-finite weighted loss.
    import dataclasses

    from lossreweight.reweighting import Reweighter

    real = Reweighter.reweight

    def reweight(self: Reweighter, losses: torch.Tensor, **kw: Any) -> Any:
        out = real(self, losses, **kw)
        if kw["step"] >= 2:
            nan = torch.tensor(float("nan"))
            stats = {**out.stats, "weighted_loss": nan}
            return dataclasses.replace(out, loss=out.loss * nan, stats=stats)
        return out

    monkeypatch.setattr(Reweighter, "reweight", reweight)
    out = tmp_path / "run"
    assert train_main(out, "train.max_nonfinite_steps=2") == 3
    err = one_line(capsys.readouterr().err)
    assert "per-sample losses were finite but the reweighted loss was not" in err
    assert "raise reweight.temperature" in err and "lower train.lr" not in err
    assert f"last good checkpoint: {out / 'checkpoints' / 'step_00000002'}" in err


# -- issue 19: every number is about the data and model it names ---------------------------------
def nan_weights(ckpt: Path, *, manifest_says_finite: bool) -> None:
    """Make a checkpoint's weights non-finite, with a manifest that matches the files (as a
    diverged run saves them; `manifest_says_finite=True`: a manifest that does not know)."""
    from safetensors.torch import load_file, save_file

    from lossreweight.integrity import write_manifest

    weights = ckpt / "model.safetensors"
    state = load_file(str(weights))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, str(weights))
    (ckpt / "manifest.json").unlink()
    (ckpt / "COMPLETE").unlink()
    write_manifest(ckpt, int(ckpt.name.removeprefix("step_")), finite=manifest_says_finite)
    (ckpt / "COMPLETE").write_text(ckpt.name.removeprefix("step_") + "\n")


@pytest.mark.parametrize("manifest_says_finite", [False, True])
def test_nonfinite_weights_are_never_scored_nor_exported_without_force(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], manifest_says_finite: bool
) -> None:
    pytest.importorskip("transformers")
    nan_weights(run / "checkpoints" / "step_00000006", manifest_says_finite=manifest_says_finite)
    assert main(["eval", str(run), "--device", "cpu"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "holds non-finite weights" in err and "step_00000004" in err  # the last good one
    assert main(["export-hf", str(run), str(tmp_path / "hf")]) == 2
    err = one_line(capsys.readouterr().err)
    assert "holds non-finite weights" in err and "--force" in err
    assert not (tmp_path / "hf").exists()
    assert main(["export-hf", str(run), str(tmp_path / "hf"), "--force"]) == 0
    capsys.readouterr()
    # A curve over every checkpoint scores the finite ones and leaves the diverged one out.
    assert main(["eval", str(run), "--all-checkpoints", "--json", "--device", "cpu"]) == 0
    curve = json.loads(capsys.readouterr().out)
    assert [p["step"] for p in curve["points"]] == [4]


def test_eval_refuses_data_other_than_the_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = write_corpus(tmp_path / "corpus", "a b c d e f g h")
    out = tmp_path / "run"
    data = [f"data.sources=[{corpus}]", f"data.cache_dir={tmp_path / 'cache'}"]
    assert train_main(out, *data, "train.max_steps=2") == 0
    write_corpus(corpus, "i j k l m n o p")  # the run's config now names other text
    before = snapshot(out)
    assert main(["eval", str(out), "--device", "cpu"]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"{out} was trained on other data" in err and "to evaluate it" in err
    assert snapshot(out) == before


def test_a_changed_shard_is_caught_before_resume_and_eval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fingerprint covers the bytes read, not only the checksums the index stores."""
    from lossreweight.data import prepare_data

    data_dir = tmp_path / "data"
    prepare_data(load_config("tiny", SHORT).data, data_dir, progress=False)
    prepared = [f"data.prepared={data_dir}"]
    out = tmp_path / "run"
    assert train_main(out, *prepared, "train.max_steps=2") == 0
    shard = sorted((data_dir / "val").glob("*.bin"))[0]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # an edit in the middle: sizes and sampled ends still match
    shard.write_bytes(bytes(raw))
    assert main(["eval", str(out), "--device", "cpu"]) == 2
    assert "fails its checksum" in one_line(capsys.readouterr().err)
    assert train_main(out, *prepared, "train.max_steps=4") == 2
    assert "fails its checksum" in one_line(capsys.readouterr().err)


def test_moved_prepared_data_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lossreweight.data import prepare_data

    old = tmp_path / "old"
    prepare_data(load_config("tiny", SHORT).data, old, progress=False)
    out = tmp_path / "run"
    assert train_main(out, f"data.prepared={old}", "train.max_steps=2") == 0
    new = tmp_path / "moved" / "data"
    new.parent.mkdir()
    old.rename(new)
    # Moved, and named through a symlink: the fingerprint is the identity, not the path.
    (tmp_path / "link").symlink_to(new)
    assert train_main(out, f"data.prepared={tmp_path / 'link'}", "train.max_steps=4") == 0
    assert logged_steps(out) == [1, 2, 3, 4]
    capsys.readouterr()


def test_a_lost_data_json_is_noticed(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run / "data.json").unlink()
    before = snapshot(run)
    assert train_main(run, "train.max_steps=8") == 2
    err = one_line(capsys.readouterr().err)
    assert "data.json is missing" in err and "restore it" in err
    assert main(["eval", str(run), "--device", "cpu"]) == 2
    assert "data.json is missing" in one_line(capsys.readouterr().err)
    assert snapshot(run) == before


def test_export_refuses_a_tokenizer_other_than_the_runs(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("transformers")
    tok = next(p for p in sorted((run / "tokenizer").rglob("*")) if p.is_file())
    tok.write_bytes(tok.read_bytes() + b" ")
    assert main(["export-hf", str(run), str(tmp_path / "hf")]) == 2
    err = one_line(capsys.readouterr().err)
    assert "tokenizer changed since the run trained with it" in err
    assert not (tmp_path / "hf").exists()


def test_eval_and_export_during_training_say_the_run_is_being_trained(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("transformers")
    with DirectoryLock(run, what="run directory"):  # a trainer holds the run
        assert main(["eval", str(run), "--json", "--device", "cpu"]) == 0  # whole checkpoints
        assert f"{run} is being trained (pid {os.getpid()}" in capsys.readouterr().err
        # A save in progress replaced the newest checkpoint's weights under our feet.
        flip_bit(run / "checkpoints" / "step_00000006" / "model.safetensors")
        for cmd in (
            ["eval", str(run), "--device", "cpu"],
            ["export-hf", str(run), str(tmp_path / "hf")],
        ):
            assert main(cmd) == 2
            err = one_line(capsys.readouterr().err)
            assert f"{run} is being trained (pid {os.getpid()}" in err and "re-run" in err
        shutil.rmtree(run / "checkpoints")
        assert main(["eval", str(run), "--device", "cpu"]) == 2
        err = one_line(capsys.readouterr().err)
        assert "is being trained" in err and "no complete checkpoint yet" in err


def test_joining_the_same_folder_twice_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lossreweight.data import prepare_data

    p0 = tmp_path / "p0"
    prepare_data(load_config("tiny", SHORT).data, p0, progress=False)
    shutil.copytree(p0, tmp_path / "copy")
    (tmp_path / "link").symlink_to(p0)
    for other, how in (
        (p0, "names the same folder twice"),
        (tmp_path / "link", "names the same folder twice"),
        (tmp_path / "copy", "names two folders of the same data"),
    ):
        out = tmp_path / "joined"
        assert main(["prepare", "--join", str(p0), str(other), "--out", str(out)]) == 2
        err = one_line(capsys.readouterr().err)
        assert how in err and "give each prepared part once" in err
        assert not out.exists()
