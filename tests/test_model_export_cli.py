"""`lossreweight export-hf RUN_DIR OUT_DIR` and the run-directory helpers it uses."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import save_file, save_model

from lossreweight.cli import main
from lossreweight.errors import CheckpointError
from lossreweight.model import ModelConfig, build_model, load_run_model

transformers = pytest.importorskip("transformers")

VOCAB = 61
SECTION = {
    "dim": 32,
    "n_layers": 2,
    "n_heads": 4,
    "n_kv_heads": 2,
    "max_seq_len": 32,
    "vocab_size": VOCAB,
}


def make_run(
    root, section=None, steps=(10,), complete=(10,), config_file="resolved_config.json", seed=0
):
    """A run directory as the trainer writes it; returns {step: model}."""
    section = SECTION if section is None else section
    root.mkdir(parents=True, exist_ok=True)
    run_config = {"seed": 0, "model": section, "train": {"steps": 20}}
    text = json.dumps(run_config) if config_file.endswith(".json") else yaml.safe_dump(run_config)
    (root / config_file).write_text(text)
    models = {}
    for i, step in enumerate(steps):
        torch.manual_seed(seed + i)
        model = build_model(ModelConfig.from_dict(section), VOCAB)
        ckpt = root / "checkpoints" / f"step_{step:08d}"
        ckpt.mkdir(parents=True)
        save_model(model, str(ckpt / "model.safetensors"))  # stores a tied weight once
        if step in complete:
            (ckpt / "COMPLETE").write_text("")
        models[step] = model.eval()
    return models


def logits_match(out_dir, model) -> bool:
    hf = transformers.AutoModelForCausalLM.from_pretrained(out_dir, local_files_only=True).eval()
    x = torch.randint(0, VOCAB, (2, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return (hf.float()(x).logits - model(x)).abs().max().item() <= 1e-4


def test_exports_the_newest_complete_checkpoint(tmp_path, capsys):
    models = make_run(tmp_path / "run", steps=(10, 20, 30), complete=(10, 20))
    assert main(["export-hf", str(tmp_path / "run"), str(tmp_path / "out")]) == 0
    assert "step_00000020" in capsys.readouterr().out
    assert logits_match(tmp_path / "out", models[20])


def test_exports_from_config_yaml_with_the_tokenizer(tmp_path):
    models = make_run(
        tmp_path / "run", section={**SECTION, "tie_embeddings": False}, config_file="config.yaml"
    )
    tok = tmp_path / "run" / "tokenizer"
    tok.mkdir()
    (tok / "tokenizer_config.json").write_text("{}")
    assert (
        main(["export-hf", str(tmp_path / "run"), str(tmp_path / "out"), "--dtype", "bfloat16"])
        == 0
    )
    assert (tmp_path / "out" / "tokenizer_config.json").exists()
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", local_files_only=True)
    assert hf.dtype == torch.bfloat16
    ref = models[10]
    torch.testing.assert_close(
        hf.model.embed_tokens.weight.float(), ref.tok_embeddings.weight.bfloat16().float()
    )


def test_vocab_size_is_read_from_the_checkpoint_when_not_in_the_config(tmp_path):
    models = make_run(tmp_path / "run")
    cfg = json.loads((tmp_path / "run" / "resolved_config.json").read_text())
    del cfg["model"]["vocab_size"]
    (tmp_path / "run" / "resolved_config.json").write_text(json.dumps(cfg))
    model, _ = load_run_model(tmp_path / "run")
    assert model.vocab_size == VOCAB
    assert model.output_weight is model.tok_embeddings.weight  # re-tied after loading
    assert logits_match_model(model, models[10])


def logits_match_model(a, b) -> bool:
    x = torch.randint(0, VOCAB, (2, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b(x))


def test_compiled_and_ddp_prefixes_are_accepted(tmp_path):
    models = make_run(tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000010" / "model.safetensors"
    state = {f"_orig_mod.{k}": v.clone() for k, v in models[10].state_dict().items()}
    save_file(state, str(ckpt))  # both names of the tied weight, prefixed
    model, _ = load_run_model(tmp_path / "run")
    assert logits_match_model(model, models[10])


def test_hf_run_is_saved_with_save_pretrained(tmp_path):
    transformers.GPT2Config(
        n_embd=32, n_layer=2, n_head=2, n_positions=32, bos_token_id=0, eos_token_id=0
    ).save_pretrained(tmp_path / "gpt2")
    section = {"hf": str(tmp_path / "gpt2"), "vocab_size": VOCAB}
    models = make_run(tmp_path / "run", section=section)
    assert main(["export-hf", str(tmp_path / "run"), str(tmp_path / "out")]) == 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "out", local_files_only=True
    ).eval()
    assert type(hf).__name__ == "GPT2LMHeadModel"
    x = torch.randint(0, VOCAB, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, models[10](x))


def run_cli_error(args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lossreweight export-hf: error: ")
    return err


def test_no_complete_checkpoint_is_a_one_line_error(tmp_path, capsys):
    make_run(tmp_path / "run", complete=())
    err = run_cli_error(["export-hf", str(tmp_path / "run"), str(tmp_path / "out")], capsys)
    assert "has no complete checkpoint" in err
    assert not (tmp_path / "out").exists()


def test_missing_run_dir_and_config(tmp_path, capsys):
    err = run_cli_error(["export-hf", str(tmp_path / "nope"), str(tmp_path / "out")], capsys)
    assert "does not exist" in err
    (tmp_path / "empty").mkdir()
    err = run_cli_error(["export-hf", str(tmp_path / "empty"), str(tmp_path / "out")], capsys)
    assert "has no resolved_config.json or config.yaml" in err


def test_force_replaces_only_an_earlier_export(tmp_path, capsys):
    models = make_run(tmp_path / "run")
    assert main(["export-hf", str(tmp_path / "run"), str(tmp_path / "out")]) == 0
    capsys.readouterr()
    (tmp_path / "out" / "old.txt").write_text("x")
    err = run_cli_error(["export-hf", str(tmp_path / "run"), str(tmp_path / "out")], capsys)
    assert "pass --force to replace this earlier export" in err
    err = run_cli_error(
        ["export-hf", str(tmp_path / "run"), str(tmp_path / "out"), "--force"], capsys
    )
    assert "did not write (old.txt)" in err and (tmp_path / "out" / "old.txt").exists()
    (tmp_path / "out" / "old.txt").unlink()
    assert main(["export-hf", str(tmp_path / "run"), str(tmp_path / "out"), "--force"]) == 0
    assert logits_match(tmp_path / "out", models[10])
    # A folder export-hf did not create is never replaced, --force or not.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    capsys.readouterr()
    err = run_cli_error(
        ["export-hf", str(tmp_path / "run"), str(tmp_path / "mine"), "--force"], capsys
    )
    assert (
        "was not created by export-hf" in err
        and (tmp_path / "mine" / "notes.txt").read_text() == "x"
    )


def test_refuses_to_replace_the_run_directory(tmp_path, capsys):
    make_run(tmp_path / "run")
    err = run_cli_error(["export-hf", str(tmp_path / "run"), str(tmp_path), "--force"], capsys)
    assert "would replace the run directory" in err
    assert (tmp_path / "run" / "resolved_config.json").exists()


def test_checkpoint_from_another_shape_is_a_checkpoint_error(tmp_path, capsys):
    make_run(tmp_path / "run")
    cfg = json.loads((tmp_path / "run" / "resolved_config.json").read_text())
    cfg["model"]["n_layers"] = 3
    (tmp_path / "run" / "resolved_config.json").write_text(json.dumps(cfg))
    err = run_cli_error(["export-hf", str(tmp_path / "run"), str(tmp_path / "out")], capsys)
    assert "does not match the configured model" in err
    cfg["model"]["n_layers"], cfg["model"]["dim"] = 2, 64
    (tmp_path / "run" / "resolved_config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not fit the configured model shape"):
        load_run_model(tmp_path / "run")
