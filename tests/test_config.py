"""The one config loader: presets, strict YAML, overrides, burn-in, temperature bounds, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lossreweight.cli import main
from lossreweight.config import (
    TEMPERATURE_RANGE,
    RunConfig,
    dump_yaml,
    load_config,
    load_data_config,
    load_yaml,
    parse_value,
    preset_names,
    read_config_file,
    validate_config,
)
from lossreweight.config.schema import DEFAULT_BURN_IN_FRACTION
from lossreweight.errors import ConfigError
from lossreweight.reweighting import SCHEDULES
from lossreweight.train.optim import lr_at


def _file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def _error(spec: str, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(spec, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- presets ---------------------------------------------------------------------------------
def test_presets_include_the_paper_gpt2_config():
    assert {"tiny", "small", "gpt2-paper", "llama-1.4b", "llama-7b"} <= set(preset_names())


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads_and_burns_in_for_five_percent(name):
    cfg = load_config(name)
    assert cfg.reweight.warmup_fraction == DEFAULT_BURN_IN_FRACTION == 0.05
    assert cfg.reweight.warmup_steps is None
    assert cfg.burn_in_steps == round(0.05 * cfg.train.max_steps)
    # The fraction follows a max_steps override (the paper's regime at any length).
    assert load_config(name, ["train.max_steps=1000"]).burn_in_steps == 50


def test_gpt2_paper_preset_is_the_paper_code_124m_configuration():
    cfg = load_config("gpt2-paper")
    t = cfg.train
    assert (cfg.data.seq_len, cfg.model.max_seq_len) == (512, 512)
    assert t.batch_size * t.grad_accum == 32
    assert (t.lr, t.lr * t.min_lr_ratio) == (5e-4, pytest.approx(1e-4))
    assert (t.lr_warmup, t.max_steps, cfg.burn_in_steps) == (500, 20_000, 1_000)
    assert (t.weight_decay, t.grad_clip) == (0.01, 1.0)
    assert (cfg.reweight.strategy, cfg.reweight.temperature) == ("linupper", 0.4)
    assert cfg.data.tokenizer.kind == "bpe" and cfg.data.tokenizer.path is None  # trained locally
    assert cfg.model.vocab_size == cfg.data.tokenizer.vocab_size == 50304
    assert (cfg.model.dim, cfg.model.n_layers, cfg.model.n_heads) == (768, 12, 12)


def test_a_file_wins_over_a_preset_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("tiny").write_text("train: {max_steps: 7}\n")
    assert load_config("tiny").train.max_steps == 7


# -- strict YAML -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("train:\n  lr: 0.1\n  lr: 0.2\n", "'train.lr' is given twice (lines 2 and 3)"),
        ("train: {lr: 0.1}\nmodel: {}\ntrain: {max_steps: 3}\n", "'train' is given twice"),
        ("reweight:\n  temperature: {kind: step, r: 1, r: 2}\n", "'reweight.temperature.r'"),
    ],
)
def test_duplicate_keys_and_sections_are_refused(tmp_path, text, key):
    message = _error(_file(tmp_path, text))
    assert key in message and "keep one" in message


def test_duplicate_key_in_an_override_value_is_refused():
    with pytest.raises(ConfigError, match="'kind' is given twice"):
        parse_value("{kind: step, kind: linear}")


def test_exponent_floats_are_floats_in_files_and_overrides(tmp_path):
    assert load_yaml("a: 1e-3\nb: 5E+4\nc: 2.5e-1\nd: 1_000\ne: 1e5x\n", "t") == {
        "a": 1e-3,
        "b": 5e4,
        "c": 0.25,
        "d": 1000,
        "e": "1e5x",
    }
    cfg = load_config(_file(tmp_path, "train: {lr: 1e-3}\n"), ["train.weight_decay=1e-2"])
    assert (cfg.train.lr, cfg.train.weight_decay) == (1e-3, 1e-2)


def test_dump_yaml_round_trips_through_the_loader():
    data = load_config("tiny", ['log.wandb_run_name="1e5"', "data.domains=[code, wiki]"]).to_dict()
    assert load_yaml(dump_yaml(data), "dumped") == data


def test_non_mapping_and_control_characters_are_config_errors(tmp_path):
    assert "must be a mapping" in _error(_file(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_config_file(_file(tmp_path, "train: \x1f\n"))


# -- booleans are not numbers ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "needle"),
    [
        (
            "train.batch_size=true",
            "train.batch_size: true is a boolean, not a number; give an integer",
        ),
        ("train.lr=false", "train.lr: false is a boolean, not a number"),
        ("train.threads=true", "train.threads: true is a boolean"),
        ("data.seq_len=true", "data.seq_len: true is a boolean"),
        ("data.tokenizer.vocab_size=true", "data.tokenizer.vocab_size: true is a boolean"),
        ("model.dim=true", "model.dim: true is a boolean"),
        ("data.mixture={code: true}", "data.mixture.code: true is a boolean"),
        ("reweight.temperature=true", "reweight.temperature: true is a boolean"),
        ("reweight.temperature={kind: step, r: true}", "temperature.r is a boolean"),
        ("reweight.warmup_fraction=true", "reweight.warmup_fraction: true is a boolean"),
    ],
)
def test_booleans_are_refused_as_numbers(override, needle):
    assert needle in _error("tiny", [override])


def test_numbers_still_accepted_where_they_belong():
    cfg = load_config("tiny", ["train.lr=3", "train.compile=false", "model.tie_embeddings=true"])
    assert cfg.train.lr == 3.0 and isinstance(cfg.train.lr, float)
    with pytest.raises(ConfigError):  # and bool-typed keys keep refusing junk
        load_config("tiny", ["train.compile=maybe"])


# -- temperature -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override",
    [
        "reweight.temperature=1e308",
        "reweight.temperature=1e-300",
        "reweight.temperature=5e-4",
        "reweight.temperature={kind: step, r: 0.4, r_warm: 1e9}",
        "reweight.temperature={kind: cosine, r_start: 100, r_end: 1e-5, span: 10}",
    ],
)
def test_temperatures_outside_the_usable_range_are_refused_at_config_time(override):
    message = _error("tiny", [override])
    lo, hi = TEMPERATURE_RANGE
    assert f"outside [{lo:g}, {hi:g}]" in message and "pick r in range" in message


def test_temperature_range_edges_are_accepted():
    lo, hi = TEMPERATURE_RANGE
    assert load_config("tiny", [f"reweight.temperature={lo!r}"]).reweight.temperature == lo
    assert load_config("tiny", [f"reweight.temperature={hi!r}"]).reweight.temperature == hi


def test_unknown_schedule_key_lists_the_valid_ones():
    message = _error("tiny", ["reweight.temperature={kind: step, r: 0.4, swich_step: 5}"])
    assert "unknown key 'swich_step'" in message
    assert "valid: kind, r, r_warm, switch_step" in message
    message = _error("tiny", ["reweight.temperature={kind: steep, r: 0.4}"])
    assert f"valid: {', '.join(SCHEDULES)}" in message


def test_wrong_temperature_type_is_one_message():
    message = _error("tiny", ["reweight.temperature=hot"])
    assert message.count("temperature") == 2 and "{kind: step, r: 0.4}" in message


# -- burn-in and lr warm-up ------------------------------------------------------------------
def test_burn_in_steps_or_fraction():
    assert load_config("tiny", ["reweight.warmup_steps=7"]).burn_in_steps == 7
    cfg = load_config("tiny", ["reweight.warmup_fraction=0.25", "train.max_steps=40"])
    assert cfg.burn_in_steps == 10 and cfg.reweight.warmup_steps is None
    # Defaults follow the paper when neither is given.
    assert RunConfig().burn_in_steps == round(
        DEFAULT_BURN_IN_FRACTION * RunConfig().train.max_steps
    )


def test_burn_in_both_in_one_file_is_refused(tmp_path):
    text = "reweight: {warmup_steps: 10, warmup_fraction: 0.1}\n"
    message = _error(_file(tmp_path, text))
    assert "reweight.warmup_steps and reweight.warmup_fraction are both set" in message
    # An override of one replaces the other; two contradicting overrides are refused.
    assert load_config(_file(tmp_path, text), ["reweight.warmup_steps=3"]).burn_in_steps == 3
    assert "say the same thing two ways" in _error(
        "tiny", ["reweight.warmup_steps=3", "reweight.warmup_fraction=0.1"]
    )


def test_burn_in_reaches_the_reweighter():
    # The trainer builds its Reweighter with RunConfig.burn_in_steps.
    from lossreweight.train.step import build_reweighter

    cfg = load_config("tiny", ["train.max_steps=200"])
    rw = build_reweighter(cfg, num_domains=6)
    assert rw.warmup_steps == cfg.burn_in_steps == 10


def test_lr_warmup_fraction_follows_max_steps():
    cfg = load_config("tiny", ["train.lr_warmup_fraction=0.1", "train.max_steps=200"])
    assert cfg.train.lr_warmup == 20 and cfg.train.lr_warmup_steps is None
    assert lr_at(9, cfg.train) == pytest.approx(cfg.train.lr * 10 / 20)
    assert lr_at(19, cfg.train) == pytest.approx(cfg.train.lr)
    assert load_config("tiny", ["train.lr_warmup_steps=5"]).train.lr_warmup == 5
    assert load_config("tiny").train.lr_warmup == 20


def test_a_saved_resolved_config_validates_again():
    cfg = load_config("gpt2-paper", ["train.lr_warmup_fraction=0.025"])
    again = validate_config(cfg.to_dict(), where="saved")
    assert again == cfg and again.burn_in_steps == 1000 and again.train.lr_warmup == 500


def test_unknown_keys_name_the_closest():
    assert "did you mean reweight.warmup_fraction" in _error(
        "tiny", ["reweight.warmup_fractoin=0.1"]
    )


# -- every command goes through it -----------------------------------------------------------
def test_prepare_reads_the_data_section_with_overrides(tmp_path):
    assert load_data_config("tiny", ["data.seq_len=64"]).seq_len == 64
    with pytest.raises(ConfigError, match="prepare reads only the data section"):
        load_data_config("tiny", ["train.lr=1"])
    with pytest.raises(ConfigError, match="given twice"):
        load_data_config(_file(tmp_path, "data: {seq_len: 64}\ndata: {seq_len: 32}\n"))
    with pytest.raises(ConfigError, match="data.seq_len: true is a boolean"):
        load_data_config("tiny", ["data.seq_len=true"])


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "tiny", "--out", "{out}", "train.batch_size=true"],
        ["prepare", "tiny", "--out", "{out}", "data.seq_len=true"],
        ["compare", "tiny", "--out", "{out}", "--strategies", "uniform", "train.batch_size=true"],
        ["config", "tiny", "train.batch_size=true"],
    ],
)
def test_commands_share_the_loader_errors(tmp_path, capsys, argv):
    out = tmp_path / "out"
    assert main([a.replace("{out}", str(out)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "is a boolean, not a number" in err and err.count("\n") == 1
    if argv[0] != "compare":  # compare marks its output folder before it reads the config
        assert not out.exists()
