"""Nothing a user made is deleted or written through a link (issue 19.1, 19.2, 21.1).

`prepare` replaces exactly the files an earlier prepare listed as its own (its manifest,
`.prepared-files.json`) and refuses a folder it cannot prove it wrote; lock files and new
files are opened without following links; a second prepare of the same data waits for the
first instead of failing; a killed prepare's temporary folder goes at the next run.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest_data import small_config
from test_reliability_helpers import one_line, snapshot

from lossreweight.cli import main
from lossreweight.data import PreparedData, prepare_data
from lossreweight.data.outdir import PREPARED_FILES
from lossreweight.errors import ConfigError, DataError, UserError
from lossreweight.locking import DirectoryLock, DirectoryLocked
from lossreweight.safe_files import (
    WORK_MARKER,
    UnsafePath,
    WorkDir,
    foreign_entries,
    open_new,
    remove_listed,
    remove_stale_work_dirs,
)

DOMAINS = ["docs", "math"]


def cfg(tmp: Path, **overrides: object):  # noqa: ANN201
    return small_config(tmp / "cache", domains=DOMAINS, **overrides)


def user_files(folder: Path) -> dict[str, bytes]:
    """A user's README, source tree and notes, written into `folder`."""
    files = {
        "README.md": b"my notes on this data",
        "src/tool.py": b"print('mine')\n",
        "train/NOTES.txt": b"shards from the March crawl",
    }
    for rel, body in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(body)
    return files


def intact(folder: Path, files: dict[str, bytes]) -> bool:
    return all((folder / rel).read_bytes() == body for rel, body in files.items())


# -- prepare deletes only what it listed as its own -----------------------------------------
def test_force_on_a_folder_with_an_unreadable_index_wipes_nothing(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    mine = user_files(out)
    (out / "index.json").write_text("{not json")
    before = snapshot(out)
    config = tmp_path / "data.yaml"
    config.write_text(json.dumps({"domains": DOMAINS, "max_chars_per_domain": 40_000,
                                  "seq_len": 32, "tokenizer": {"vocab_size": 512}}))  # fmt: skip
    assert main(["prepare", str(config), "--out", str(out), "--force", "--quiet"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "cannot tell its files from yours" in err and "--force or not" in err, err
    assert "replace it with" not in err  # no blind --force advice
    assert snapshot(out) == before and intact(out, mine)


def test_rebuilding_damaged_data_keeps_the_users_notes(tmp_path):
    out = tmp_path / "out"
    data = prepare_data(cfg(tmp_path), out, progress=False)
    mine = user_files(out)
    shard = out / data.index["splits"]["train"]["math"]["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:-4])  # damaged: the same settings rebuild it
    again = prepare_data(cfg(tmp_path), out, progress=False)
    again.verify()
    assert intact(out, mine)
    listed = set(json.loads((out / PREPARED_FILES).read_text())["files"])
    assert "README.md" not in listed and "index.json" in listed


def test_force_replaces_only_listed_files_and_keeps_the_rest(tmp_path):
    out = tmp_path / "out"
    first = prepare_data(cfg(tmp_path), out, progress=False)
    old_files = set(json.loads((out / PREPARED_FILES).read_text())["files"])
    mine = user_files(out)
    with pytest.raises(DataError, match="only the files prepare wrote there"):
        prepare_data(cfg(tmp_path, seq_len=16), out, progress=False)
    second = prepare_data(cfg(tmp_path, seq_len=16), out, progress=False, replace=True)
    assert second.fingerprint != first.fingerprint and intact(out, mine)
    new_files = set(json.loads((out / PREPARED_FILES).read_text())["files"])
    gone = old_files - new_files
    assert all(not (out / f).exists() for f in gone)
    assert foreign_entries(out, new_files, ignore=[".lock", PREPARED_FILES]) == sorted(
        ["README.md", "src", "train/NOTES.txt"]
    )


def test_data_written_before_manifests_is_replaced_by_what_its_index_lists(tmp_path):
    out = tmp_path / "out"
    prepare_data(cfg(tmp_path), out, progress=False)
    (out / PREPARED_FILES).unlink()  # as an older version wrote it
    mine = user_files(out)
    prepare_data(cfg(tmp_path, seq_len=16), out, progress=False, replace=True)
    assert intact(out, mine) and PreparedData.open(out).seq_len == 16


def test_our_damaged_data_is_replaced_with_force_only_and_the_advice_says_why(tmp_path):
    out = tmp_path / "out"
    prepare_data(cfg(tmp_path), out, progress=False)
    mine = user_files(out)
    (out / "index.json").write_text("garbage")
    with pytest.raises(DataError) as e:
        prepare_data(cfg(tmp_path), out, progress=False)
    message = str(e.value)
    assert "\n" not in message and PREPARED_FILES in message and "--force" in message
    assert "anything else there stays" in message
    prepare_data(cfg(tmp_path), out, progress=False, replace=True)
    assert intact(out, mine)


def test_a_user_file_where_prepare_writes_is_refused_before_anything_is_deleted(tmp_path):
    out = tmp_path / "out"
    prepare_data(cfg(tmp_path), out, progress=False)
    listed = json.loads((out / PREPARED_FILES).read_text())["files"]
    (out / "tokenizer").rename(tmp_path / "tok")  # the user moved it and put a file there
    (out / "tokenizer").write_text("mine")
    before = snapshot(out)
    with pytest.raises(DataError, match="where prepare writes its own files"):
        prepare_data(cfg(tmp_path, seq_len=16), out, progress=False, replace=True)
    assert snapshot(out) == before and listed


def test_a_symlinked_subfolder_is_never_followed(tmp_path):
    out = tmp_path / "out"
    data = prepare_data(cfg(tmp_path), out, progress=False)
    elsewhere = tmp_path / "elsewhere"
    (out / "train").rename(elsewhere)  # the shards now live elsewhere, linked in
    (out / "train").symlink_to(elsewhere)
    victim = {p.name: p.read_bytes() for p in elsewhere.iterdir()}
    with pytest.raises(DataError, match="where prepare writes its own files"):
        prepare_data(cfg(tmp_path, seq_len=16), out, progress=False, replace=True)
    assert {p.name: p.read_bytes() for p in elsewhere.iterdir()} == victim
    assert data.domains == DOMAINS
    # The deletion helper never follows it either.
    remove_listed(out, [f"train/{name}" for name in victim])
    assert {p.name: p.read_bytes() for p in elsewhere.iterdir()} == victim


def test_out_given_as_a_link_to_a_users_folder_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    mine = user_files(theirs)
    link = tmp_path / "link"
    link.symlink_to(theirs)
    with pytest.raises(DataError, match="not empty and holds no prepared data"):
        prepare_data(cfg(tmp_path), link, progress=False, replace=True)
    assert intact(theirs, mine) and sorted(p.name for p in theirs.iterdir()) == [
        "README.md",
        "src",
        "train",
    ]
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    with pytest.raises(DataError, match="symbolic link to a missing folder"):
        prepare_data(cfg(tmp_path), tmp_path / "dangling", progress=False)
    assert not (tmp_path / "missing").exists()


# -- no write through a planted link ---------------------------------------------------------
@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_a_planted_lock_file_link_is_refused_and_its_target_untouched(tmp_path, kind):
    victim = tmp_path / "victim.txt"
    victim.write_text("do not truncate me")
    out = tmp_path / "out"
    out.mkdir()
    if kind == "symlink":
        (out / ".lock").symlink_to(victim)
    else:
        os.link(victim, out / ".lock")
    with pytest.raises(UnsafePath) as e:
        prepare_data(cfg(tmp_path), out, progress=False)
    assert "never writes through a link" in str(e.value) and "\n" not in str(e.value)
    assert victim.read_text() == "do not truncate me"
    # The run directory's lock is the same lock.
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(victim)
    with pytest.raises(UnsafePath):
        DirectoryLock(run, what="run directory").acquire()
    assert victim.read_text() == "do not truncate me"


def test_new_files_are_never_opened_through_a_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "planted").symlink_to(victim)
    with pytest.raises(FileExistsError):
        open_new(tmp_path / "planted")
    assert victim.read_text() == "keep"


# -- bounded refusals ------------------------------------------------------------------------
def test_absurd_worker_counts_are_refused(tmp_path):
    for workers in (0, 10**6, 2.5, True):
        with pytest.raises(ConfigError, match="workers must be an integer from 1 to"):
            prepare_data(cfg(tmp_path), tmp_path / "out", progress=False, workers=workers)
    assert not (tmp_path / "out").exists()


def test_a_huge_count_of_domains_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("lossreweight.data.corpus.MAX_DOMAINS", 5)
    source = tmp_path / "docs.jsonl"
    source.write_text(
        "".join(json.dumps({"text": f"doc {i} " * 20, "d": f"dom{i}"}) + "\n" for i in range(40))
    )
    config = small_config(tmp_path / "cache", sources=[str(source)], domain_field="d")
    with pytest.raises(DataError, match="more than 5 domains") as e:
        prepare_data(config, tmp_path / "out", progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path, capsys):
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\ndata:\n  domains: *a8\n")
    start = time.monotonic()
    assert main(["prepare", str(bomb), "--out", str(tmp_path / "out")]) == 2
    assert time.monotonic() - start < 10  # unchecked: about a minute of CPU
    assert "expands to more than" in one_line(capsys.readouterr().err)
    # An alias inside the node it names: refused, not counted forever (the first version of
    # the count above looped, growing, until the OOM killer ended the test worker).
    loop = tmp_path / "loop.yaml"
    loop.write_text("data: &d {domains: [*d]}\n")
    assert main(["prepare", str(loop), "--out", str(tmp_path / "out")]) == 2
    assert "refers to itself through a YAML alias" in one_line(capsys.readouterr().err)
    # A config file hundreds of MB long is refused before it is read.
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as f:
        f.truncate(512 << 20)  # sparse: no disk used
    assert main(["prepare", str(huge), "--out", str(tmp_path / "out")]) == 2
    assert "is 512 MB; a config is a few KB" in one_line(capsys.readouterr().err)


# -- parallel sweeps: the second waits (issue 21.1) -------------------------------------------
def test_a_second_prepare_waits_for_the_first_and_uses_its_data(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.setenv("LOSSREWEIGHT_LOCK_TIMEOUT", "60")
    holder = DirectoryLock(out, what="prepared-data directory").acquire()
    first: dict[str, PreparedData] = {}

    def release_after_preparing() -> None:
        time.sleep(0.5)
        holder.release()

    threading.Thread(target=release_after_preparing).start()
    first["data"] = prepare_data(cfg(tmp_path), out, progress=False)
    err = capsys.readouterr().err
    assert f"waiting for pid {os.getpid()}" in err and "LOSSREWEIGHT_LOCK_TIMEOUT" in err
    assert first["data"].domains == DOMAINS


def test_the_wait_has_a_timeout(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("LOSSREWEIGHT_LOCK_TIMEOUT", "0.3")
    with DirectoryLock(out, what="prepared-data directory"):
        start = time.monotonic()
        with pytest.raises(DirectoryLocked, match=r"after waiting 0.3 s") as e:
            prepare_data(cfg(tmp_path), out, progress=False)
        assert time.monotonic() - start < 5 and "\n" not in str(e.value)
    monkeypatch.setenv("LOSSREWEIGHT_LOCK_TIMEOUT", "soon")
    with pytest.raises(Exception, match="LOSSREWEIGHT_LOCK_TIMEOUT='soon' must be a number"):
        prepare_data(cfg(tmp_path), out, progress=False)


# -- temporary folders of killed runs --------------------------------------------------------
def test_only_unheld_marked_temporary_folders_are_removed(tmp_path):
    live = WorkDir(tmp_path, ".x.partial-")  # held by this process: a live writer
    stale = tmp_path / ".x.partial-1-dead"
    stale.mkdir()
    (stale / WORK_MARKER).write_bytes(b"")
    (stale / "half.bin").write_bytes(b"\0" * 8)
    theirs = tmp_path / ".x.partial-users-folder"
    theirs.mkdir()
    (theirs / "keep.txt").write_text("mine")
    link = tmp_path / ".x.partial-link"
    link.symlink_to(theirs)
    fresh = tmp_path / ".x.partial-2-justmade"  # a writer between its mkdir and its flock
    fresh.mkdir()
    old = tmp_path / ".x.partial-3-killed"  # killed between mkdir and marker, long ago
    old.mkdir()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert remove_stale_work_dirs(tmp_path, ".x.partial-") == 2
    assert live.path.is_dir() and not stale.exists() and (theirs / "keep.txt").exists()
    assert link.is_symlink() and fresh.is_dir() and not old.exists()
    live.close()
    assert not live.path.exists()


# -- export-hf: the same rule ----------------------------------------------------------------
def _model():  # noqa: ANN202
    from lossreweight.model import ModelConfig
    from lossreweight.model.llama import LlamaModel

    torch.manual_seed(0)
    cfg = ModelConfig(dim=32, n_layers=1, n_heads=2, vocab_size=64, max_seq_len=16)
    return LlamaModel(cfg)


def test_export_force_keeps_a_users_file_and_lists_its_own(tmp_path):
    from lossreweight.model.hf_export import EXPORT_MARKER, export_hf

    out = tmp_path / "out"
    export_hf(_model(), out)
    listed = json.loads((out / EXPORT_MARKER).read_text())["files"]
    assert "model.safetensors" in listed and "config.json" in listed
    (out / "README.md").write_text("my model card")
    with pytest.raises(UserError, match=r"did not write \(README.md\)"):
        export_hf(_model(), out, force=True)
    assert (out / "README.md").read_text() == "my model card"


def test_export_through_a_link_replaces_the_target_and_keeps_the_link(tmp_path):
    from lossreweight.model.hf_export import export_hf

    target = tmp_path / "exports" / "v1"
    export_hf(_model(), target)
    link = tmp_path / "latest"
    link.symlink_to(target)
    export_hf(_model(), link, force=True)
    assert link.is_symlink() and (target / "model.safetensors").is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == ["v1"]  # no debris


def test_a_killed_exports_leftovers_go_at_the_next_export(tmp_path):
    from lossreweight.model.hf_export import EXPORT_MARKER, export_hf

    out = tmp_path / "out"
    tmp = tmp_path / ".out.tmp-4242-dead"  # killed while writing
    tmp.mkdir()
    (tmp / WORK_MARKER).write_bytes(b"")
    (tmp / "model.safetensors").write_bytes(b"half")
    old = tmp_path / ".out.old-4242-dead"  # killed between the two renames
    old.mkdir()
    (old / EXPORT_MARKER).write_text('{"files": []}')
    export_hf(_model(), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_interrupted_export_leaves_nothing(tmp_path, monkeypatch):
    from lossreweight.model import hf_export

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt  # what SIGTERM becomes in the export-hf command

    monkeypatch.setattr(hf_export, "_write_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        hf_export.export_hf(_model(), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("how", ["raises", "short"])
def test_a_full_disk_during_export_is_one_line_and_keeps_the_earlier_export(
    tmp_path, monkeypatch, how
):
    import safetensors.torch

    from lossreweight.model import hf_export

    out = tmp_path / "out"
    hf_export.export_hf(_model(), out)
    before = snapshot(out)
    real = safetensors.torch.save_file

    def full(tensors: dict, path: object, metadata: object = None) -> None:
        if how == "raises":  # what safetensors raises (its own error type, not OSError)
            raise RuntimeError(
                "Error while serializing: IoError(Os { code: 28, kind: StorageFull })"
            )
        real(tensors, path, metadata=metadata)
        with open(path, "r+b") as f:  # a writer that did not notice the disk filled up
            f.truncate(100)

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(UserError, match="no space left on the device while exporting") as e:
        hf_export.export_hf(_model(), out, force=True)
    assert "\n" not in str(e.value)
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# -- parallel sweeps from the command line (issue 21.1) --------------------------------------
@pytest.mark.xdist_group("reliability")
def test_two_trainings_and_two_prepares_on_the_same_uncached_data_all_succeed(tmp_path):
    import subprocess
    import sys

    from test_reliability_helpers import RUN, child_env

    data = tmp_path / "data"  # nothing prepared yet: the first process prepares, the rest wait
    cli = [sys.executable, "-m", "lossreweight.cli"]
    overrides = [o for o in RUN if o.startswith("data.")]
    train = [*cli, "train", "tiny", "--data-dir", str(data), "--out"]
    prepare = [*cli, "prepare", "tiny", "--out", str(data), "--quiet", *overrides]
    steps = [*RUN, "train.max_steps=2"]
    commands = [[*train, str(tmp_path / f"run{i}"), *steps] for i in range(2)] + [prepare] * 2
    env = child_env(LOSSREWEIGHT_LOCK_TIMEOUT="300")
    procs = [
        subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    # Before the lock-wait, all but the first exited 2 ("in use by pid N"). Whether a process
    # waited or found the data ready depends on timing; that it waits is tested above.
    assert [code for code, _ in results] == [0, 0, 0, 0], results
    assert PreparedData.open(data).domains
    assert not list(tmp_path.glob(".data.partial-*"))


# -- signals during prepare (issue 19.5) ------------------------------------------------------
@pytest.mark.xdist_group("reliability")
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_a_signal_during_prepare_leaves_nothing_the_next_run_does_not_clean(tmp_path, sig):
    import signal
    import subprocess
    import sys

    from test_reliability_helpers import RUN, child_env, finish, wait_for

    out = tmp_path / "data"
    cmd = [sys.executable, "-m", "lossreweight.cli", "prepare", "tiny", "--out", str(out)]
    cmd += ["--quiet", *(o for o in RUN if o.startswith("data."))]
    proc = subprocess.Popen(cmd, env=child_env(), stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(tmp_path.glob(".data.partial-*")), proc)
    proc.send_signal(getattr(signal, sig))
    code, err = finish(proc)
    if sig == "SIGTERM":  # unwinds: one line, exit 130, no temporary folder, no lock file
        assert code == 130 and one_line(err).strip() == "lossreweight prepare: interrupted"
        assert list(tmp_path.iterdir()) == []
    else:  # no chance to clean up: the next run does
        assert code == -9 and any(tmp_path.glob(".data.partial-*"))
    again = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
