"""The result files of RUN/eval/ (lossreweight.evaluation.results), without lm-eval or a model."""

from __future__ import annotations

import json
import math
import os

import pytest

from lossreweight.evaluation import read_downstream
from lossreweight.evaluation.results import downstream_stem, write_new_json


def test_write_new_json_never_replaces_and_leaves_no_temporaries(tmp_path):
    folder = tmp_path / "eval"
    paths = [write_new_json(folder, downstream_stem(6), {"n": i}) for i in range(3)]
    write_new_json(folder, downstream_stem(12), {"n": 3})
    assert [p.name for p in paths] == [
        "downstream_step_00000006.json",
        "downstream_step_00000006_2.json",
        "downstream_step_00000006_3.json",
    ]
    assert [json.loads(p.read_text())["n"] for p in paths] == [0, 1, 2]
    assert sorted(os.listdir(folder)) == sorted(
        [p.name for p in paths] + ["downstream_step_00000012.json"]
    )
    (folder / "downstream_step_00000007.json").write_text("{not json")  # damaged by hand: skipped
    rows = read_downstream(tmp_path)
    assert [(r["file"], r["n"]) for r in rows] == [
        ("downstream_step_00000006.json", 0),
        ("downstream_step_00000006_2.json", 1),
        ("downstream_step_00000006_3.json", 2),
        ("downstream_step_00000012.json", 3),
    ]
    assert read_downstream(tmp_path / "nowhere") == []


def test_write_new_json_refuses_nan_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError):
        write_new_json(tmp_path, "x", {"v": math.nan})
    assert list(tmp_path.iterdir()) == []


def test_disk_full_during_eval_all_checkpoints_is_one_line_and_no_debris(
    tmp_path, monkeypatch, capsys
):
    """The disk fills while curve.json is written (a write that names no file, as json.dump's
    does): one line naming the file, exit 2, no temporary file and no eval/ folder left."""
    import errno

    from train_utils import TINY_OVERRIDES

    import lossreweight.evaluation.results as results
    from lossreweight.cli import main
    from lossreweight.train import load_config, train

    run = tmp_path / "run"
    train(load_config("tiny", [*TINY_OVERRIDES, "checkpoint.every=3", "checkpoint.keep=2"]), run)
    real = results.json.dump

    def dump(data, f, **kw):
        f.write('{"half')
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.json, "dump", dump)
    assert main(["eval", str(run), "--all-checkpoints", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert "No space left on device" in err and ".curve.tmp-" in err
    assert not (run / "eval").exists()
    monkeypatch.setattr(results.json, "dump", real)
    assert main(["eval", str(run), "--all-checkpoints", "--device", "cpu"]) == 0
    assert sorted(p.name for p in (run / "eval").iterdir() if p.suffix == ".json") == ["curve.json"]
