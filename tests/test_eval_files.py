"""The eval/ files and metric names, without lm-eval or a model."""

from __future__ import annotations

import json
import math
import os

import pytest

from lossreweight.evaluation import downstream_metrics, eval_metrics, read_downstream
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


def test_eval_metric_names():
    result = {
        "val_loss": 2.5,
        "val_loss_domain_avg": 2.75,
        "val_loss_by_domain": {"code": 2.0, "wiki": 3.5},
    }
    assert eval_metrics(result) == {
        "eval/loss": 2.5,
        "eval/domain_avg_loss": 2.75,
        "eval/worst_domain_loss": 3.5,
        "eval/code/loss": 2.0,
        "eval/wiki/loss": 3.5,
    }


def test_downstream_metric_names():
    results = {
        "sciq": {
            "alias": "sciq",
            "acc,none": 0.5,
            "acc_stderr,none": 0.1,
            "acc_norm,none": 0.25,
            "acc_norm_stderr,none": "N/A",
            "sample_len": 10,
        },
        "gsm8k": {"exact_match,strict-match": 0.125, "exact_match,flexible-extract": math.nan},
    }
    assert downstream_metrics(results) == {
        "downstream/sciq/acc": 0.5,
        "downstream/sciq/acc_stderr": 0.1,
        "downstream/sciq/acc_norm": 0.25,
        "downstream/gsm8k/exact_match/strict-match": 0.125,
        "downstream/gsm8k/exact_match/flexible-extract": None,
    }
