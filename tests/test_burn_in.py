"""The burn-in: fixed or ended by the model's progress, recorded, and exact across a resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from train_utils import TINY_OVERRIDES, deterministic

from lossreweight.config import load_config
from lossreweight.data import PreparedData, prepare_data
from lossreweight.data.unigram import UNIGRAM_FILE, entropy_nats, mixture_entropy, unigram_counts
from lossreweight.errors import ConfigError
from lossreweight.reweighting import Reweighter
from lossreweight.rundir import read_metrics
from lossreweight.train import train
from lossreweight.train.burn_in import BurnIn
from lossreweight.train.loop import Trainer

# Ends within the 12 steps of the tiny run (its loss starts near 6.25).
PROGRESS = (
    "reweight.warmup_steps=0",
    "reweight.burn_in_until_loss=6.2",
    "reweight.burn_in_smoothing=0.5",
)


def _cfg(*extra: str):
    return load_config("tiny", [*TINY_OVERRIDES, "train.max_steps=12", *extra])


def test_entropy_of_known_distributions():
    assert entropy_nats(np.array([5, 5])) == pytest.approx(np.log(2))
    assert entropy_nats(np.array([7, 0, 0])) == 0.0
    assert entropy_nats(np.zeros(3)) == 0.0
    # Two domains with disjoint tokens, drawn half and half: one bit more than each alone.
    counts = np.array([[1, 1, 0, 0], [0, 0, 3, 3]])
    assert mixture_entropy(counts, [0.5, 0.5]) == pytest.approx(np.log(4))
    assert mixture_entropy(counts, [1.0, 0.0]) == pytest.approx(np.log(2))


def test_prepare_stores_unigram_counts_that_match_the_shards():
    data = prepare_data(_cfg().data, progress=False)
    stored = np.load(data.root / UNIGRAM_FILE, allow_pickle=False)
    assert stored.shape == (len(data.domains), data.vocab_size)
    for i, d in enumerate(data.domains):
        assert stored[i].sum() == data.index["splits"]["train"][d]["tokens"]
        expect = np.bincount(data.tokens("train", d), minlength=data.vocab_size)
        assert (stored[i] == expect).all()
    by_domain = data.index["unigram"]["train_entropy_by_domain"]
    assert by_domain[data.domains[0]] == pytest.approx(entropy_nats(stored[0]))


def test_counts_are_recomputed_for_data_prepared_without_them(tmp_path):
    data = prepare_data(_cfg().data, progress=False)
    copy = tmp_path / "data"
    shutil.copytree(data.root, copy, ignore=shutil.ignore_patterns(UNIGRAM_FILE, ".lock"))
    assert (unigram_counts(PreparedData.open(copy)) == unigram_counts(data)).all()


def _burn_in(target: float | None, min_steps: int = 0) -> tuple[BurnIn, Reweighter]:
    rw = Reweighter("linupper", 0.4)
    return BurnIn(rw, min_steps=min_steps, target=target, smoothing=0.5), rw


def test_progress_rule_ends_at_the_next_step_after_the_target_is_met():
    b, rw = _burn_in(target=2.0, min_steps=3)
    assert rw.is_uniform(10**9)  # not reached: uniform at any step
    for step, loss in enumerate([4.0, 3.0, 2.0, 1.0], start=1):
        b.observe(step, {"mean_loss": loss})
        b.apply(step)
        if b.end_step is not None:
            break
    # bias-corrected EMA at 0.5: 4, 3.33, 2.57, 1.73: below 2 after step 4
    assert b.end_step == 4 and not rw.is_uniform(4) and rw.is_uniform(3)
    assert b.summary()["train_loss_smoothed"] == pytest.approx(1.625 / 0.9375)


def test_progress_rule_waits_for_the_minimum_and_ignores_skipped_or_nan_steps():
    b, rw = _burn_in(target=5.0, min_steps=6)
    b.observe(1, {"mean_loss": float("nan")})
    b.observe(1, {"mean_loss": 100.0}, skipped=True)
    assert b.seen == 0
    b.observe(1, {"mean_loss": 1.0})
    b.apply(2)
    assert b.end_step == 6 and rw.warmup_steps == 6


def test_fixed_burn_in_is_known_from_the_start():
    b, rw = _burn_in(target=None, min_steps=5)
    assert b.end_step == 5 and rw.warmup_steps == 5
    assert b.eval_due(5) and not b.eval_due(4)
    b.measured(
        {"eval/loss": 3.0, "eval/domain_avg_loss": 3.0, "eval/a/loss": 2.0, "eval/b/loss": 4.0}
    )
    assert not b.eval_due(5)
    assert b.summary()["val_loss"] == 3.0 and b.summary()["val_loss_domain_avg"] == 3.0


def test_one_progress_rule_at_a_time(tmp_path):
    from lossreweight.config import RunConfig, dump_yaml

    with pytest.raises(ValueError, match="burn_in_until_loss and reweight.burn_in_below_unigram"):
        RunConfig.model_validate(
            {"reweight": {"burn_in_until_loss": 3.0, "burn_in_below_unigram": 0.5}}
        )
    with pytest.raises(ConfigError, match="say the same thing two ways"):
        _cfg("reweight.burn_in_until_loss=3", "reweight.burn_in_below_unigram=0.5")
    # an override of one replaces the other given by a preset or file (like warmup_steps)
    path = tmp_path / "run.yaml"
    path.write_text(dump_yaml(_cfg("reweight.burn_in_until_loss=3").to_dict()))
    rw = load_config(path, ["reweight.burn_in_below_unigram=0.5"]).reweight
    assert rw.burn_in_until_loss is None and rw.burn_in_below_unigram == 0.5


def test_run_records_where_the_burn_in_ended(tmp_path):
    # The tiny model does not pass the unigram entropy in 12 steps: that rule never ends here
    train(_cfg("reweight.warmup_steps=0", "reweight.burn_in_below_unigram=0"), tmp_path / "u")
    b = json.loads((tmp_path / "u" / "final.json").read_text())["burn_in"]
    assert b["unigram_entropy"] > 0 and b["target_loss"] == pytest.approx(b["unigram_entropy"])
    assert b["end_step"] is None
    # ... an absolute target it reaches does.
    cfg = _cfg(*PROGRESS)
    train(cfg, tmp_path / "run")
    b = json.loads((tmp_path / "run" / "final.json").read_text())["burn_in"]
    assert 0 < b["end_step"] < 12
    assert b["train_loss_smoothed"] < b["target_loss"] == 6.2
    assert b["val_loss"] is not None and b["unigram_entropy"] > 0
    rows = read_metrics(tmp_path / "run")
    # uniform weights (ESS fraction 1) exactly for the burn-in's steps
    uniform = [r["reweight/ess_fraction"] > 0.99999 for r in rows]
    assert uniform == [r["step"] <= b["end_step"] for r in rows]


def test_fixed_burn_in_is_recorded_too(tmp_path):
    train(_cfg("reweight.warmup_steps=4"), tmp_path / "run")
    b = json.loads((tmp_path / "run" / "final.json").read_text())["burn_in"]
    assert b["end_step"] == 4 and b["val_loss"] is not None and b["target_loss"] is None


def test_unreachable_target_keeps_weights_uniform(tmp_path):
    train(_cfg("reweight.warmup_steps=0", "reweight.burn_in_until_loss=0.001"), tmp_path / "run")
    b = json.loads((tmp_path / "run" / "final.json").read_text())["burn_in"]
    assert b["end_step"] is None
    assert all(r["reweight/ess_fraction"] > 0.99999 for r in read_metrics(tmp_path / "run"))


def test_resume_across_a_progress_burn_in_equals_uninterrupted(tmp_path, monkeypatch):
    cfg = _cfg(*PROGRESS, "checkpoint.every=0", "eval.every=0")
    train(cfg, tmp_path / "straight")
    end = json.loads((tmp_path / "straight" / "final.json").read_text())["burn_in"]["end_step"]
    stop_at = max(1, end - 1)  # stopped inside the burn-in: the EMA must survive the resume
    monkeypatch.setenv("LOSSREWEIGHT_FAULT", f"step:{stop_at}:term")
    r = Trainer(cfg, tmp_path / "resumed").run()
    monkeypatch.delenv("LOSSREWEIGHT_FAULT")
    assert r.interrupted
    train(cfg, tmp_path / "resumed")
    a = deterministic(read_metrics(tmp_path / "straight"))
    b = deterministic(read_metrics(tmp_path / "resumed"))
    assert a == b
    fa = json.loads((tmp_path / "straight" / "final.json").read_text())["burn_in"]
    fb = json.loads((tmp_path / "resumed" / "final.json").read_text())["burn_in"]
    assert fa == fb


def test_unigram_rule_on_data_without_training_tokens_is_a_config_error(tmp_path):
    cfg = _cfg("reweight.burn_in_below_unigram=0.5")
    data = prepare_data(cfg.data, progress=False)
    copy = tmp_path / "data"
    shutil.copytree(data.root, copy, ignore=shutil.ignore_patterns(".lock"))
    np.save(copy / UNIGRAM_FILE, np.zeros((len(data.domains), data.vocab_size), dtype=np.int64))
    with pytest.raises(ConfigError, match="unigram entropy"):
        BurnIn.for_run(cfg, PreparedData.open(copy), Reweighter("linupper", 0.4))


def test_checkpoints_from_before_the_burn_in_state_restore_a_fixed_burn_in():
    from lossreweight.train.checkpoint import _part_state

    b, rw = _burn_in(target=None, min_steps=5)
    b.load_state_dict(_part_state({"loader": {}}, "burn_in", b))  # an older checkpoint
    assert b.end_step == 5 and rw.warmup_steps == 5
    with pytest.raises(KeyError):  # any other part missing from a checkpoint is still an error
        _part_state({}, "reweighter", rw)
