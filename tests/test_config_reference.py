"""`lossreweight config` and docs/config.md: generated from the schema's descriptions, in sync."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lossreweight.cli import main
from lossreweight.config import SCHEDULE_KEYS, load_config, load_yaml, preset_names
from lossreweight.config.reference import DOC_PATH, iter_fields, render_markdown
from lossreweight.reweighting import SCHEDULES

ROOT = Path(__file__).resolve().parents[1]


def test_docs_config_md_is_generated_from_the_code():
    doc = ROOT / DOC_PATH
    assert doc.read_text() == render_markdown(), (
        "docs/config.md is stale: regenerate it with "
        "`python -m lossreweight.config.reference > docs/config.md`"
    )


def test_every_key_has_a_description_and_a_row_in_the_docs():
    page = render_markdown()
    missing = [key for key, field, _ in iter_fields() if not (field.description or "").strip()]
    assert not missing, f"give these fields a Field(description=...): {missing}"
    for key, _, sub in iter_fields():
        if sub is None:
            assert f"| `{key}` |" in page


def test_every_schedule_parameter_is_documented():
    params = {f.name for cls in SCHEDULES.values() for f in dataclasses.fields(cls)}
    assert params | {"kind"} == set(SCHEDULE_KEYS)
    page = render_markdown()
    for key in SCHEDULE_KEYS:
        assert f"`reweight.temperature.{key}`" in page


@pytest.mark.parametrize("name", preset_names())
def test_config_prints_a_commented_file_that_loads_back_the_same(tmp_path, capsys, name):
    overrides = [
        "train.max_steps=321",
        "reweight.temperature={kind: linear, r_start: 10, r_end: 0.5, span: 100}",
    ]
    assert main(["config", name, *overrides]) == 0
    text = capsys.readouterr().out
    expected = load_config(name, overrides)
    assert load_yaml(text, "printed") == expected.to_dict()
    saved = tmp_path / "saved.yaml"
    saved.write_text(text)
    assert load_config(str(saved)) == expected
    # Each key comes with its meaning, schedule keys included.
    assert "# optimizer steps\n  max_steps: 321\n" in text
    assert "#   schedule key r_warm: " in text
    assert f"after {expected.burn_in_steps} uniform burn-in steps" in text


def test_printed_strings_that_look_like_numbers_stay_strings(tmp_path, capsys):
    tricky = r'data.sources=["1e3", "yes", "0x1f", ".inf", "null", "a: b", "x\ny"]'
    assert main(["config", "tiny", tricky, 'log.wandb_run_name="1e-3"']) == 0
    text = capsys.readouterr().out
    saved = tmp_path / "saved.yaml"
    saved.write_text(text)
    cfg = load_config(str(saved))
    assert cfg.data.sources == ["1e3", "yes", "0x1f", ".inf", "null", "a: b", "x\ny"]
    assert cfg.log.wandb_run_name == "1e-3"


def test_config_without_a_preset_prints_the_defaults(capsys):
    assert main(["config", "reweight.warmup_steps=3"]) == 0
    out = capsys.readouterr().out
    assert "the built-in defaults with reweight.warmup_steps=3" in out
    assert "after 3 uniform burn-in steps" in out
    assert main(["config", "--list-presets"]) == 0
    assert capsys.readouterr().out.split() == preset_names()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["config", "nope"], "neither a file nor a preset"),
        (["config", "tiny", "train.lrr=1"], "did you mean train.lr"),
        (
            ["config", "tiny", "reweight.temperature={kind: step, r: 1, bogus: 2}"],
            "valid: kind, r, r_warm, switch_step",
        ),
    ],
)
def test_config_errors_are_one_line(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and err.startswith("lossreweight config: error:")
