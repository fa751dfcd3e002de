"""The trainer: modes, metrics, resume, DDP equivalence, config errors."""

from __future__ import annotations

import os
import subprocess

import pytest
from train_utils import TINY_OVERRIDES, deterministic, torchrun_train_cmd

from lossreweight.cli import main
from lossreweight.rundir import read_metrics
from lossreweight.train import load_config, train
from lossreweight.train.loop import Trainer

REQUIRED = {
    "step",
    "tokens",
    "train/lr",
    "train/loss",
    "train/weighted_loss",
    "train/grad_norm",
    "train/skipped",
    "train/tokens_per_s",
    "reweight/ess_fraction",
    "reweight/max_weight_x_m",
    "reweight/temperature",
}


def _cfg(*extra: str):
    return load_config("tiny", TINY_OVERRIDES + list(extra))


@pytest.mark.parametrize(
    "extra",
    [
        ["reweight.strategy=uniform"],
        ["reweight.strategy=linupper"],
        ["reweight.strategy=quadratic", "train.grad_accum=2"],
        ["reweight.strategy=extremes", "reweight.scope=step", "train.grad_accum=2"],
        [
            "reweight.strategy=linupper",
            "reweight.warmup_steps=3",
            "reweight.max_weight=2.0",
            "reweight.temperature={kind: cosine, r_start: 1.0, r_end: 0.2, span: 6}",
            "train.loss_path=fused",
        ],
    ],
    ids=[
        "uniform",
        "linupper",
        "quadratic-accum",
        "extremes-step-scope",
        "warmup-cap-schedule-fused",
    ],
)
def test_trains_in_each_mode(tmp_path, extra):
    result = train(_cfg(*extra), tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    for r in rows:
        assert set(r) >= REQUIRED
        assert all(v is not None for v in r.values())
    evals = [r for r in rows if "eval/loss" in r]
    assert [r["step"] for r in evals] == [3, 6]
    assert {
        "eval/code/loss",
        "eval/math/loss",
        "eval/domain_avg_loss",
        "eval/worst_domain_loss",
    } <= set(evals[-1])
    assert result.steps == 6 and result.final_eval["eval/loss"] == evals[-1]["eval/loss"]
    assert (tmp_path / "run" / "final.json").is_file()
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts == ["step_00000003", "step_00000006"]
    if "reweight.warmup_steps=3" in extra:
        assert rows[0]["reweight/max_weight_x_m"] == pytest.approx(1.0)
        assert max(r["reweight/max_weight_x_m"] for r in rows[3:]) <= 2.0 + 1e-4


def test_uniform_train_loss_equals_weighted_loss(tmp_path):
    train(_cfg("reweight.strategy=uniform"), tmp_path / "u")
    for r in read_metrics(tmp_path / "u"):
        assert r["train/weighted_loss"] == pytest.approx(r["train/loss"], rel=1e-5)


def test_loss_goes_down_on_learnable_stream(tmp_path):
    text = tmp_path / "toy"
    text.mkdir()
    (text / "a.txt").write_text("the cat sat on the mat. " * 400)
    (text / "b.txt").write_text("one two three four five six. " * 400)
    cfg = _cfg(
        f"data.sources=[{text}]",
        "data.tokenizer.vocab_size=300",
        "data.max_chars_per_domain=null",
        "data.val_fraction=0.5",
        "train.max_steps=40",
        "train.lr=1e-2",
        "eval.every=0",
        "log.every=10",
    )
    train(cfg, tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    assert rows[-1]["train/loss"] < 0.5 * rows[0]["train/loss"]


def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
    cfg = _cfg("reweight.strategy=linupper", "train.grad_accum=2", "checkpoint.every=0")
    train(cfg, tmp_path / "straight")
    monkeypatch.setenv("LOSSREWEIGHT_FAULT", "step:4:term")  # a SIGTERM at the end of step 4
    r = Trainer(cfg, tmp_path / "resumed").run()
    monkeypatch.delenv("LOSSREWEIGHT_FAULT")
    assert r.interrupted and r.steps == 4
    assert not (tmp_path / "resumed" / "final.json").exists()
    train(cfg, tmp_path / "resumed")
    a = deterministic(read_metrics(tmp_path / "straight"))
    b = deterministic(read_metrics(tmp_path / "resumed"))
    assert a == b


def test_resume_refuses_other_settings(tmp_path, capsys):
    args = ["train", "tiny", "--out", str(tmp_path / "run"), *TINY_OVERRIDES, "train.max_steps=3"]
    assert main(args) == 0
    assert main([*args, "reweight.strategy=quadratic"]) == 2
    err = capsys.readouterr().err
    assert (
        "other settings" in err
        and "reweight.strategy" in err
        and err[-1] == "\n"
        and err.count("\n") == 1
    )
    # A longer run of the same settings resumes and extends.
    assert main([*args[:-1], "train.max_steps=4"]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train.lrr=1"], "did you mean train.lr"),
        (["reweight.strategi=linupper"], "did you mean reweight.strategy"),
        (["reweight.strategy=upper"], "ambiguous"),
        (["reweight.temperature=0"], "temperature"),
        (["train.batch_size=0"], "train.batch_size"),
        (["train.lr=abc"], "train.lr"),
        (["noequals"], "key=value"),
        (["model.dim=30", "model.n_heads=4"], "not divisible"),
    ],
)
def test_cli_config_errors(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["train", "tiny", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()  # nothing written


def test_cli_missing_config(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "r")]) == 2
    assert "neither a file nor a preset" in capsys.readouterr().err


def test_cli_bad_yaml(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    assert main(["train", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "not valid YAML" in capsys.readouterr().err


@pytest.mark.xdist_group("dist")
@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_two_ranks_equal_one_process(tmp_path, sharding):
    """2 gloo ranks x batch 4 see the same global batches as 1 process x batch 8; with
    global weights the updates, hence the losses, are the same (DDP and FSDP2)."""
    single = _cfg("train.batch_size=8", "reweight.strategy=linupper")
    train(single, tmp_path / "one")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = torchrun_train_cmd(
        tmp_path / "two",
        *TINY_OVERRIDES,
        "train.batch_size=4",
        "reweight.strategy=linupper",
        f"train.fsdp={sharding == 'fsdp'}",
    )
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("done:") == 1  # only rank 0 reports
    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert len(one) == len(two) == 6
    for a, b in zip(one, two, strict=True):
        assert a["tokens"] == b["tokens"]
        assert b["train/loss"] == pytest.approx(a["train/loss"], rel=1e-4)
        assert b["train/weighted_loss"] == pytest.approx(a["train/weighted_loss"], rel=1e-4)
        assert b["reweight/max_weight_x_m"] == pytest.approx(a["reweight/max_weight_x_m"], rel=1e-3)
        if "eval/loss" in a:
            assert b["eval/loss"] == pytest.approx(a["eval/loss"], rel=1e-4)


def test_train_help_lists_every_preset(capsys):
    from lossreweight.config.yaml_io import preset_names

    assert main(["train", "--help"]) == 0
    out = "".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert set(preset_names()) >= {"tiny", "gpt2-paper"}
    assert all(name in out for name in preset_names())
