"""`lossreweight prepare`: the table on success, one line on stderr and exit 2 on bad input."""

from __future__ import annotations

import pytest
import yaml
from conftest_data import SMALL, sentences, write_jsonl

import lossreweight.commands.prepare as prepare_cmd
from lossreweight.cli import main
from lossreweight.data import PreparedData


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lossreweight prepare: error: ")
    return lines[0]


def test_prepare_a_run_config(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    data_section = SMALL | {"domains": ["math", "docs"], "cache_dir": str(tmp_path / "cache")}
    cfg.write_text(yaml.safe_dump({"data": data_section, "model": {"dim": 8}, "train": {"lr": 1}}))
    code, out, err = run(["prepare", str(cfg), "--out", str(tmp_path / "out"), "--quiet"], capsys)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == [
        "domain",
        "documents",
        "characters",
        "tokens",
        "train",
        "seqs",
        "val",
        "seqs",
    ]
    assert [r.split()[0] for r in rows[:3]] == ["docs", "math", "total"]
    assert f"data: {tmp_path / 'out'}" in out
    assert PreparedData.open(tmp_path / "out").domains == ["docs", "math"]


def test_prepare_a_data_only_config(tmp_path, capsys):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in sentences(6, "a")])
    cfg = tmp_path / "data.yaml"
    cfg.write_text(
        yaml.safe_dump({"sources": [str(path)], "seq_len": 16, "tokenizer": {"vocab_size": 300}})
    )
    code, out, _ = run(["prepare", str(cfg), "--out", str(tmp_path / "out"), "--quiet"], capsys)
    assert code == 0 and out.splitlines()[1].split()[0] == "a"


def test_missing_data_file(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"sources": [str(tmp_path / "missing.jsonl")]}}))
    code, _, err = run(["prepare", str(cfg)], capsys)
    assert code == 2
    assert "source not found" in one_error_line(err) and "missing.jsonl" in err


def test_missing_config_file(tmp_path, capsys):
    code, _, err = run(["prepare", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2
    assert "neither a file nor a preset; presets: " in one_error_line(err)


def test_invalid_config_values(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  seq_len: 1\n  mixture: {code: -1}\n  colour: blue\n")
    code, _, err = run(["prepare", str(cfg)], capsys)
    line = one_error_line(err)
    assert code == 2
    assert "data.seq_len" in line and "unknown config key 'data.colour'" in line
    assert "mixture" in line


def test_bad_jsonl_line_through_the_cli(tmp_path, capsys):
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "a"}, {"txt": "b"}])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"sources": [str(path)]}))
    code, _, err = run(["prepare", str(cfg), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "x.jsonl:2:" in one_error_line(err)


def test_preset_lookup():
    # prepare reads a preset's data section through the one config loader.
    from lossreweight.config import load_config

    assert prepare_cmd.load_data_config("tiny") == load_config("tiny").data
    assert prepare_cmd.load_data_config("tiny", ["data.seq_len=64"]).seq_len == 64


@pytest.mark.parametrize("text", ["- a\n- b\n", "data: [1]\n", "a: [unclosed\n"])
def test_config_that_is_not_a_mapping(tmp_path, capsys, text):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    code, _, err = run(["prepare", str(cfg)], capsys)
    assert code == 2 and str(cfg) in one_error_line(err)


def test_overrides_workers_and_force(tmp_path, capsys):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in sentences(8, "a")])
    cfg = tmp_path / "data.yaml"
    cfg.write_text(yaml.safe_dump({"sources": [str(path)], "tokenizer": {"vocab_size": 300}}))
    out = tmp_path / "out"
    base = ["prepare", str(cfg), "--out", str(out), "--quiet"]
    code, _, err = run([*base, "data.seq_len=16", "--workers", "2"], capsys)
    assert code == 0, err
    assert PreparedData.open(out).seq_len == 16
    # Other settings into the same folder: refused, then replaced with --force.
    code, _, err = run([*base, "data.seq_len=8"], capsys)
    assert code == 2 and "seq_len is 16 there, 8 here" in one_error_line(err)
    code, _, err = run([*base, "data.seq_len=8", "--force"], capsys)
    assert code == 0, err
    assert PreparedData.open(out).seq_len == 8


@pytest.mark.parametrize(
    "argv, message",
    [
        (["prepare", "tiny", "--workers", "0"], "--workers must be from 1 to"),
        (["prepare", "tiny", "--workers", "100000"], "--workers must be from 1 to"),
        (["prepare"], "give a CONFIG"),
        (["prepare", "tiny", "data.prepared=/somewhere"], "already prepared"),
        (["prepare", "--join", "a", "b"], "--join takes prepared folders and --out DIR"),
        (["prepare", "--join", "a", "--out", "c"], "at least two prepared folders"),
    ],
)
def test_usage_errors(capsys, argv, message):
    code, _, err = run(argv, capsys)
    assert code == 2 and message in one_error_line(err)
