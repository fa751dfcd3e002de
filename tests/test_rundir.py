"""The run directory (lossreweight.rundir): its readers, the one "same run" rule, the data's
identity and who is training a run. End-to-end cases (resume, eval, export on real runs) are in
test_reliability_rundir.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lossreweight.errors import CheckpointError, ConfigError, DataError
from lossreweight.locking import DirectoryLock
from lossreweight.rundir import (
    atomic_write,
    check_resume,
    check_same_data,
    compare_runs,
    data_fingerprint,
    find_latest_checkpoint,
    read_final,
    read_run_config,
    require_checkpoint,
    trainer_of,
)


# -- reading a run ------------------------------------------------------------------------------
def test_find_latest_checkpoint(tmp_path):
    assert find_latest_checkpoint(tmp_path) is None
    root = tmp_path / "checkpoints"
    for name, complete in [
        ("step_00000009", True),
        ("step_00000100", True),
        ("step_00000200", False),
        ("step_00000300.tmp", True),
        ("notes", True),
    ]:
        (root / name).mkdir(parents=True)
        if complete:
            (root / name / "COMPLETE").write_text("")
    assert find_latest_checkpoint(tmp_path) == root / "step_00000100"


def test_require_checkpoint_is_the_one_no_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="has no complete checkpoint.*train until one"):
        require_checkpoint(tmp_path)
    done = tmp_path / "checkpoints" / "step_00000002"
    done.mkdir(parents=True)
    (done / "COMPLETE").write_text("2\n")
    assert require_checkpoint(tmp_path) == done


def test_read_run_config_json_then_yaml_else_one_line(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        read_run_config(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no resolved_config.json or config.yaml"):
        read_run_config(tmp_path)
    pytest.importorskip("yaml")
    (tmp_path / "config.yaml").write_text("model:\n  dim: 8\n")  # a run from before the json
    assert read_run_config(tmp_path) == {"model": {"dim": 8}}
    (tmp_path / "resolved_config.json").write_text(json.dumps({"model": {"dim": 16}}))
    assert read_run_config(tmp_path) == {"model": {"dim": 16}}
    (tmp_path / "resolved_config.json").write_text("{half")
    with pytest.raises(CheckpointError, match="cannot read .*resolved_config.json"):
        read_run_config(tmp_path)


def test_read_final_under_the_vocabulary_old_runs_included(tmp_path: Path) -> None:
    assert read_final(tmp_path) is None  # not finished
    old = {"steps": 6, "tokens": 96, "val_loss": 2.5, "val_loss_by_domain": {"a": 2.0, "b": 3.0}}
    (tmp_path / "final.json").write_text(json.dumps(old))
    assert read_final(tmp_path) == {
        "steps": 6,
        "tokens": 96,
        "eval/loss": 2.5,
        "eval/a/loss": 2.0,
        "eval/b/loss": 3.0,
        "eval/worst_domain_loss": 3.0,
    }
    new = {"steps": 6, "eval/loss": 2.5, "eval/a/loss": 2.5}
    atomic_write(tmp_path / "final.json", json.dumps(new))
    assert read_final(tmp_path) == new


def test_trainer_of_names_the_lock_holder_and_writes_nothing(tmp_path: Path) -> None:
    assert trainer_of(tmp_path) is None  # no lock file: nothing created
    assert list(tmp_path.iterdir()) == []
    with DirectoryLock(tmp_path, what="run directory"):
        assert trainer_of(tmp_path).startswith("pid ")
        with pytest.raises(CheckpointError, match="is being trained .*no complete checkpoint yet"):
            require_checkpoint(tmp_path)
    assert trainer_of(tmp_path) is None  # released (the stale file never counts)


# -- the one "same run" rule --------------------------------------------------------------------
def test_same_run_rule_classes() -> None:
    saved = {
        "train": {"lr": 1e-3, "max_steps": 10, "threads": 1, "seed": 0},
        "log": {"every": 1},
        "data": {"cache_dir": "/a", "mixture": {"x": 1}},
        "model": {"vocab_size": 512, "dim": 32},
    }
    wanted = {
        "train": {"lr": 5e-4, "max_steps": 20, "threads": 4, "seed": 1},
        "log": {"every": 5},
        "data": {"cache_dir": "/b", "mixture": {"x": 2}},
        "model": {"vocab_size": None, "dim": 32},  # None: resolved by the trainer, matches
    }
    diff = compare_runs(saved, wanted)
    assert diff.blocking == ("data.mixture", "train.seed")
    assert diff.recovery == ("train.lr",) and diff.resumable == ("train.max_steps",)
    assert diff.ignored == ("data.cache_dir", "log.every", "train.threads")
    assert not diff.can_resume and not diff.same_results
    only_lr = compare_runs(saved, {**saved, "train": {**saved["train"], "lr": 5e-4}})
    assert only_lr.can_resume and not only_lr.same_results
    assert compare_runs(saved, {**saved, "log": {"every": 9}}).same_results


def _run(tmp_path: Path, fingerprint: str, prepared: str) -> Path:
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "step_00000002"
    ckpt.mkdir(parents=True)
    (ckpt / "COMPLETE").write_text("2\n")
    saved = {"train": {"seed": 0}, "data": {"prepared": prepared}}
    (run / "resolved_config.json").write_text(json.dumps(saved))
    (run / "data.json").write_text(json.dumps({"fingerprint": fingerprint}))
    return run


def test_prepared_data_named_by_another_path_resumes_when_it_is_the_same_data(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path, "f" * 64, "/old/data")
    moved = {"train": {"seed": 0}, "data": {"prepared": "/new/data"}}
    assert check_resume(run, moved, "f" * 64) is None
    with pytest.raises(DataError, match="trained on other data"):
        check_resume(run, moved, "e" * 64)
    with pytest.raises(ConfigError, match="train.seed"):  # other settings still block
        check_resume(run, {**moved, "train": {"seed": 1}}, "f" * 64)


def test_a_lost_data_json_is_noticed(tmp_path: Path) -> None:
    run = _run(tmp_path, "f" * 64, "/data")
    (run / "data.json").unlink()
    with pytest.raises(DataError, match="data.json is missing.*restore it from a backup to x"):
        check_same_data(run, "f" * 64, doing="x")
    for ckpt in (run / "checkpoints").iterdir():  # set-up never finished: nothing to check
        (ckpt / "COMPLETE").unlink()
    check_same_data(run, "f" * 64, doing="x")


def test_data_fingerprint_follows_content_not_location() -> None:
    index = {
        "seq_len": 32,
        "dtype": "uint16",
        "domains": ["a"],
        "tokenizer": {"dir": "tokenizer", "vocab_size": 9},
        "splits": {
            "train": {"a": {"shards": [{"file": "train/0000-00000.bin", "tokens": 64, "crc32": 7}]}}
        },
    }
    moved = {**index, "tokenizer": {"dir": "elsewhere", "vocab_size": 9}}
    assert data_fingerprint(index, None) == data_fingerprint(moved, None)
    changed = json.loads(json.dumps(index))
    changed["splits"]["train"]["a"]["shards"][0]["crc32"] = 8
    assert data_fingerprint(index, None) != data_fingerprint(changed, None)
