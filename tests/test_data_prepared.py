"""Prepared data is the user's: training on a prepared folder as it is (read-only), never
replacing data prepared with other settings, one writer per folder, a full disk, parallel
preparation with the same bytes as one worker, and joining folders prepared apart."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from conftest_data import sentences, write_jsonl
from train_utils import TINY_OVERRIDES

import lossreweight.data.encode as encode_mod
from lossreweight.cli import main
from lossreweight.data import DataConfig, PreparedData, prepare_data
from lossreweight.data.shards import StreamWriter
from lossreweight.errors import DataError
from lossreweight.locking import DirectoryLock, DirectoryLocked
from lossreweight.safe_files import WORK_MARKER


def corpus(tmp_path: Path, n: int = 12, topics=("alpha", "beta", "gamma")) -> Path:
    """A folder whose subfolders are the domains."""
    folder = tmp_path / "corpus"
    for topic in topics:
        (folder / topic).mkdir(parents=True, exist_ok=True)
        write_jsonl(folder / topic / "docs.jsonl", [{"text": t} for t in sentences(n, topic)])
    return folder


def cfg(tmp_path: Path, sources: list[Path], **overrides) -> DataConfig:
    base = {
        "sources": [str(s) for s in sources],
        "seq_len": 32,
        "tokenizer": {"vocab_size": 300},
        "cache_dir": str(tmp_path / "cache"),
    }
    return DataConfig(**(base | overrides))


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def set_writable(folder: Path, writable: bool) -> None:
    for p in [folder, *folder.rglob("*")]:
        mode = p.stat().st_mode
        bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        p.chmod(mode | stat.S_IWUSR if writable else mode & ~bits)


def test_train_on_user_prepared_data_as_it_is_without_writing_to_it(tmp_path, capsys):
    mine = tmp_path / "my_shards"
    prepare_data(cfg(tmp_path, [corpus(tmp_path)]), mine, progress=False)
    before = digest(mine)
    set_writable(mine, False)  # any write attempt (a lock file included) would fail
    try:
        code = main(
            [
                "train",
                "tiny",
                "--out",
                str(tmp_path / "run"),
                *TINY_OVERRIDES,
                f"data.prepared={mine}",
                "data.seq_len=64",
            ]  # fmt: skip
        )
    finally:
        set_writable(mine, True)
    assert code == 0, capsys.readouterr().err
    assert digest(mine) == before
    # Its domains, its seq_len (32, not the config's 64), its tokenizer.
    run_data = json.loads((tmp_path / "run" / "data.json").read_text())
    assert run_data["domains"] == ["alpha", "beta", "gamma"]
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    step = next(r for r in rows if "tokens" in r and r.get("step") == 1)
    assert step["tokens"] == 4 * 32  # batch 4 x the prepared seq_len


def test_data_dir_never_replaces_data_prepared_with_other_settings(tmp_path, capsys):
    mine = tmp_path / "my_shards"
    prepare_data(cfg(tmp_path, [corpus(tmp_path)]), mine, progress=False)
    before = digest(mine)
    code = main(
        [
            "train",
            "tiny",
            "--out",
            str(tmp_path / "run"),
            "--data-dir",
            str(mine),
            *TINY_OVERRIDES,
            f"data.sources=[{tmp_path / 'corpus'}]",
            "data.seq_len=16",
            "data.tokenizer.vocab_size=300",
        ]  # fmt: skip
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "seq_len is 32 there, 16 here" in err
    assert f"data.prepared={mine}" in err and "choose another folder" in err
    assert digest(mine) == before and not (tmp_path / "run").exists()


def test_prepared_and_a_data_dir_together_are_refused(tmp_path):
    mine = tmp_path / "my_shards"
    prepare_data(cfg(tmp_path, [corpus(tmp_path)]), mine, progress=False)
    with pytest.raises(DataError, match="drop one"):
        prepare_data(DataConfig(prepared=str(mine)), tmp_path / "elsewhere")
    with pytest.raises(DataError, match="prepared data not found"):
        prepare_data(DataConfig(prepared=str(tmp_path / "nothing")))


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("LOSSREWEIGHT_LOCK_TIMEOUT", "0")  # do not wait for the holder
    with DirectoryLock(out, what="prepared-data directory"):
        with pytest.raises(DirectoryLocked, match=rf"in use by pid {os.getpid()}") as e:
            prepare_data(cfg(tmp_path, [corpus(tmp_path)]), out, progress=False)
        assert e.value.exit_code == 2 and "\n" not in str(e.value)
    # A lock file left by a dead process never blocks.
    (out / ".lock").write_text(json.dumps({"pid": 999999, "host": "gone", "command": "x"}))
    data = prepare_data(cfg(tmp_path, [corpus(tmp_path)]), out, progress=False)
    assert data.domains == ["alpha", "beta", "gamma"]


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    source = corpus(tmp_path)
    write = StreamWriter.write
    calls = {"n": 0}

    def full(self, ids):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.root))
        write(self, ids)

    monkeypatch.setattr(StreamWriter, "write", full)
    config = tmp_path / "data.yaml"
    config.write_text(json.dumps({"sources": [str(source)], "seq_len": 32,
                                  "tokenizer": {"vocab_size": 300}}))  # fmt: skip
    out = tmp_path / "data" / "out"
    assert main(["prepare", str(config), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no space left on the device" in err, err
    assert list((tmp_path / "data").iterdir()) == []  # no half data, no temp folder, no lock
    # Into an empty folder of the user's: the folder stays, empty.
    out.mkdir()
    calls["n"] = 0
    assert main(["prepare", str(config), "--out", str(out), "--quiet"]) == 2
    assert list((tmp_path / "data").iterdir()) == [out] and list(out.iterdir()) == []


def test_temporary_folders_of_a_killed_writer_are_cleaned_up(tmp_path):
    out = tmp_path / "out"
    stale = tmp_path / ".out.partial-424242-deadbeef"
    (stale / "train").mkdir(parents=True)
    (stale / WORK_MARKER).write_bytes(b"")  # what a killed WorkDir leaves
    (stale / "train" / "0000-00000.bin").write_bytes(b"\0" * 64)
    prepare_data(cfg(tmp_path, [corpus(tmp_path)]), out, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "out"]


def test_workers_give_the_same_bytes_as_one(tmp_path, monkeypatch):
    source = corpus(tmp_path, n=40, topics=("alpha", "beta", "gamma", "delta"))
    monkeypatch.setattr(encode_mod, "MIN_CHARS_FOR_PROCESSES", 0)  # processes even when small
    monkeypatch.setattr("lossreweight.data.build._BATCH_DOCS", 7)  # many batches in flight
    one = prepare_data(cfg(tmp_path, [source]), tmp_path / "one", progress=False, workers=1)
    two = prepare_data(cfg(tmp_path, [source]), tmp_path / "two", progress=False, workers=2)
    assert digest(one.root) == digest(two.root)
    assert len(digest(one.root)) > 8


def test_join_folders_prepared_apart(tmp_path, capsys):
    sources = corpus(tmp_path, n=20)
    # One tokenizer for every part: prepare a sample, then use its tokenizer folder.
    sample = prepare_data(cfg(tmp_path, [sources]), tmp_path / "sample", progress=False)
    tok = {"kind": "hf", "path": str(sample.tokenizer_dir)}
    halves = []
    for k, names in enumerate((["alpha", "beta"], ["beta", "gamma"])):
        part = tmp_path / f"node{k}"
        for name in names:
            lines = (sources / name / "docs.jsonl").read_text().splitlines(keepends=True)
            (part / name).mkdir(parents=True)
            # Each node has its own documents.
            (part / name / "docs.jsonl").write_text("".join(lines[k::2]))
        data = prepare_data(
            cfg(tmp_path, [part], tokenizer=tok), tmp_path / f"p{k}", progress=False
        )
        halves.append(data)
    out = tmp_path / "joined"
    code = main(
        ["prepare", "--join", str(tmp_path / "p0"), str(tmp_path / "p1"), "--out", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    joined = PreparedData.open(out, full_check=True)
    assert joined.domains == ["alpha", "beta", "gamma"]
    for split in ("train", "val"):
        for d in joined.domains:
            parts = [h.tokens(split, d) for h in halves if d in h.domains]
            assert np.array_equal(joined.tokens(split, d), np.concatenate(parts)), (split, d)
    assert joined.stats()["beta"]["documents"] == 20
    assert joined.num_train_sequences == sum(joined.train_sequences(d) for d in joined.domains)
    # Parts with another seq_len cannot be joined; an existing output is never replaced.
    other = prepare_data(
        cfg(tmp_path, [tmp_path / "node0"], tokenizer=tok, seq_len=16),
        tmp_path / "p16",
        progress=False,
    )
    assert main(["prepare", "--join", str(tmp_path / "p0"), str(other.root), "--out",
                 str(tmp_path / "j2")]) == 2  # fmt: skip
    assert "seq_len differs" in capsys.readouterr().err
    assert main(["prepare", "--join", str(tmp_path / "p0"), str(tmp_path / "p1"), "--out",
                 str(out)]) == 2  # fmt: skip
    assert "already holds prepared data" in capsys.readouterr().err


def test_workers_start_from_a_script_without_a_main_guard(tmp_path):
    """Workers are plain subprocesses: a user's script is not re-run in each of them (as
    multiprocessing's spawn would do, failing without `if __name__ == "__main__":`)."""
    import subprocess
    import sys

    source = corpus(tmp_path, n=40)
    script = tmp_path / "user_script.py"
    script.write_text(
        "import lossreweight.data.encode as enc\n"
        "from lossreweight.data import DataConfig, prepare_data\n"
        "enc.MIN_CHARS_FOR_PROCESSES = 0\n"
        "print('top level ran')\n"
        f"cfg = DataConfig(sources=[{str(source)!r}], seq_len=32, "
        "tokenizer={'vocab_size': 300})\n"
        f"data = prepare_data(cfg, {str(tmp_path / 'out')!r}, progress=False, workers=2)\n"
        "print(data.domains)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["top level ran", "['alpha', 'beta', 'gamma']"]
