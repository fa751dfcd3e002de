"""The eval/ files and metric names, without lm-eval or a model."""

from __future__ import annotations

import json
import math
import os

import pytest

from lossreweight.evaluation import read_downstream
from lossreweight.evaluation.files import downstream_stem, write_new_json


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
