"""End to end: a trained run exports to Hugging Face; any transformers causal LM trains."""

from __future__ import annotations

import pytest
import torch
from train_utils import TINY_OVERRIDES

from lossreweight.cli import main
from lossreweight.model import load_run_model
from lossreweight.rundir import read_metrics
from lossreweight.train import load_config, train


def test_export_hf_of_trained_run_gives_same_logits(tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    train(load_config("tiny", TINY_OVERRIDES), tmp_path / "run")
    assert main(["export-hf", str(tmp_path / "run"), str(tmp_path / "hf")]) == 0
    ours, _ = load_run_model(tmp_path / "run")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf", local_files_only=True)
    ids = torch.tensor([tok.encode("def main():\n    return 1 + 2\n")[:32]])
    with torch.no_grad():
        diff = (ours.eval()(ids) - hf(ids).logits).abs().max().item()
    assert diff <= 1e-4
    # Refuses to overwrite an export: one line, exit 2.
    capsys.readouterr()
    assert main(["export-hf", str(tmp_path / "run"), str(tmp_path / "hf")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_any_transformers_causal_lm_trains(tmp_path, arch):
    from transformers import GPT2Config, LlamaConfig

    if arch == "gpt2":
        hf_cfg = GPT2Config(vocab_size=512, n_embd=32, n_layer=2, n_head=2, n_positions=64)
    else:
        hf_cfg = LlamaConfig(
            vocab_size=512,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    hf_cfg.save_pretrained(tmp_path / "cfg")
    cfg = load_config(
        "tiny",
        [*TINY_OVERRIDES, f"model.hf={tmp_path / 'cfg'}", "train.max_steps=8", "train.lr=1e-2"],
    )
    result = train(cfg, tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    assert result.steps == 8 and rows[-1]["train/loss"] < rows[0]["train/loss"]
    assert main(["export-hf", str(tmp_path / "run"), str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "config.json").is_file()
