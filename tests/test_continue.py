"""Continuing a finished run by raising train.max_steps (nanoGPT's habit): the schedules keep
the length they were laid out over (train.schedule_steps, stored with the run)."""

from __future__ import annotations

import json

import pytest
from cli_utils import run_cli
from train_utils import TINY_OVERRIDES

from lossreweight.rundir import compare_runs, read_metrics
from lossreweight.train import load_config, train
from lossreweight.train.continuation import continuation_note, resolve_schedule
from lossreweight.train.optim import lr_at

# Burn-in and lr warm-up as fractions: both follow max_steps, so a continuation would move them.
FRACTIONS = ["reweight.warmup_fraction=0.5", "train.lr_warmup_fraction=0.34", "log.every=1"]


BASE = [o for o in TINY_OVERRIDES if not o.startswith("train.lr_warmup_steps=")] + FRACTIONS


def _cfg(*extra: str):
    return load_config("tiny", [*BASE, *extra])


def _saved_train(run) -> dict:
    return json.loads((run / "resolved_config.json").read_text())["train"]


def test_continued_run_keeps_its_schedule(tmp_path):
    run = tmp_path / "run"
    train(_cfg(), run)  # 6 steps: lr warm-up 2, burn-in 3
    assert _saved_train(run)["schedule_steps"] == 6
    train(_cfg("train.max_steps=10"), run)
    assert _saved_train(run)["schedule_steps"] == 6 and _saved_train(run)["max_steps"] == 10
    rows = {r["step"]: r for r in read_metrics(run)}
    assert sorted(rows) == list(range(1, 11))
    cfg = _cfg()
    floor = cfg.train.lr * cfg.train.min_lr_ratio
    # The lr reached its floor at step 6 and stays there; a re-stretched decay would climb back.
    for step in range(7, 11):
        assert rows[step]["train/lr"] == pytest.approx(floor)
    assert rows[6]["train/lr"] == pytest.approx(lr_at(5, cfg.train))
    # Burn-in: uniform weights (ESS 100%) for the first 3 steps only, in both parts.
    ess = [rows[s]["reweight/ess_fraction"] for s in range(1, 11)]
    assert ess[:3] == [pytest.approx(1.0)] * 3 and all(e < 0.999 for e in ess[3:])
    # A second continuation keeps the length the run started with.
    train(_cfg("train.max_steps=11"), run)
    assert _saved_train(run)["schedule_steps"] == 6


def test_a_fresh_longer_run_is_not_a_continuation(tmp_path):
    """A fresh 8-step run lays its schedule over 8 steps; a 6-step run continued to 8 does not."""
    train(_cfg(), tmp_path / "six")
    train(_cfg("train.max_steps=8"), tmp_path / "six")
    train(_cfg("train.max_steps=8"), tmp_path / "eight")
    cont = {r["step"]: r["train/lr"] for r in read_metrics(tmp_path / "six")}
    fresh = {r["step"]: r["train/lr"] for r in read_metrics(tmp_path / "eight")}
    assert cont[6] != fresh[6]  # the fresh run lays its schedule over 8 steps


def test_runs_saved_before_schedule_steps_continue_on_their_first_length(tmp_path):
    run = tmp_path / "run"
    train(_cfg(), run)
    resolved = json.loads((run / "resolved_config.json").read_text())
    del resolved["train"]["schedule_steps"]  # as written before the key existed
    (run / "resolved_config.json").write_text(json.dumps(resolved))
    assert resolve_schedule(_cfg("train.max_steps=9"), run).train.schedule_steps == 6
    train(_cfg("train.max_steps=9"), run)
    assert _saved_train(run)["schedule_steps"] == 6


def test_resolve_schedule(tmp_path):
    assert resolve_schedule(_cfg(), tmp_path / "new").train.schedule_steps == 6
    given = _cfg("train.schedule_steps=20")
    assert resolve_schedule(given, tmp_path / "new") is given
    cfg = _cfg()
    resolve_schedule(cfg, tmp_path / "new")
    assert cfg.train.schedule_steps is None  # the caller's config is left as it was


def test_schedule_steps_given_on_resume_must_match(tmp_path):
    run = tmp_path / "run"
    args = ["train", "tiny", "--out", str(run), *BASE]
    assert run_cli(*args)[0] == 0
    rc, _, err = run_cli(*args, "train.schedule_steps=10", "--max-steps", "10")
    assert rc == 2 and "train.schedule_steps: 6 -> 10" in err


def test_a_saved_length_matches_a_config_that_leaves_it_unset():
    """A study's cache: the config it asks for (schedule_steps null) is the finished run's."""
    wanted = _cfg().to_dict()
    saved = json.loads(json.dumps(wanted))
    saved["train"]["schedule_steps"] = 6
    assert compare_runs(saved, wanted).same_results
    other = json.loads(json.dumps(saved))
    other["train"]["schedule_steps"] = 7
    assert not compare_runs(saved, other).can_resume


def test_continuation_note():
    cfg = _cfg("train.schedule_steps=6", "train.max_steps=10")
    note = continuation_note(cfg, 6)
    assert note.startswith("continuing from step 6 to 10 on the schedule laid out over the first 6")
    assert "lr warm-up 2 steps and burn-in 3 steps are not redone" in note
    assert "the cosine decay ended at step 6, so the lr stays at its floor 0.0003" in note
    assert "still ends at step 6" in continuation_note(cfg, 4)  # interrupted before the end
    assert continuation_note(cfg, 10) is None  # nothing left to train
    assert continuation_note(_cfg("train.schedule_steps=6"), 3) is None  # a plain resume
    short = continuation_note(_cfg("train.schedule_steps=20", "train.max_steps=10"), 4)
    assert short.startswith("training to step 10 of a schedule laid out over 20 steps")
