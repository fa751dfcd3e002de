"""Hugging Face interop: export to LlamaForCausalLM, import back, and `model.hf` models."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from lossreweight.errors import CheckpointError, ConfigError  # noqa: E402
from lossreweight.model import (  # noqa: E402
    CausalLM,
    HFCausalLM,
    LlamaModel,
    ModelConfig,
    build_model,
    export_hf,
    load_hf_into_llama,
)

VOCAB = 101


def ours(**kw) -> LlamaModel:
    torch.manual_seed(0)
    cfg = ModelConfig(
        **{"dim": 64, "n_layers": 2, "n_heads": 4, "max_seq_len": 48, "rope_theta": 500.0, **kw}
    )
    return build_model(cfg, VOCAB).eval()


def ids(b: int = 3, t: int = 40) -> torch.Tensor:
    return torch.randint(0, VOCAB, (b, t), generator=torch.Generator().manual_seed(1))


def load_hf(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()


@pytest.fixture
def tokenizer_dir(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(tmp_path / "tok")
    return tmp_path / "tok"


CASES = {
    "tied": {},
    "untied": {"tie_embeddings": False},
    "gqa": {"n_kv_heads": 2, "tie_embeddings": False},
}


@pytest.mark.parametrize("case", CASES)
def test_export_gives_the_same_logits_in_transformers(case, tmp_path):
    model = ours(**CASES[case])
    export_hf(model, tmp_path / "out")
    hf = load_hf(tmp_path / "out")
    assert type(hf).__name__ == "LlamaForCausalLM"
    assert (hf.lm_head.weight is hf.model.embed_tokens.weight) == (case == "tied")
    x = ids()
    with torch.no_grad():
        diff = (hf(x).logits - model(x)).abs().max().item()
    assert diff <= 1e-4
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == [
        ".lossreweight-export",
        "config.json",
        "generation_config.json",
        "model.safetensors",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary directory left behind


@pytest.mark.parametrize("case", CASES)
def test_import_round_trip(case, tmp_path):
    model = ours(**CASES[case])
    export_hf(model, tmp_path / "out")
    back = load_hf_into_llama(tmp_path / "out")
    assert back.cfg == model.cfg
    assert (back.output.weight is back.tok_embeddings.weight) == (case == "tied")
    for (name, p), q in zip(model.state_dict().items(), back.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    x = ids()
    with torch.no_grad():
        assert torch.equal(back.eval()(x), model(x))


def test_import_a_transformers_llama(tmp_path):
    cfg = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=80,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
    )
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    hf.save_pretrained(tmp_path / "llama")
    model = load_hf_into_llama(tmp_path / "llama").eval()
    x = ids()
    with torch.no_grad():
        assert (model(x) - hf(x).logits).abs().max().item() <= 1e-4


def test_bfloat16_export(tmp_path):
    from safetensors import safe_open

    export_hf(ours(), tmp_path / "out", dtype=torch.bfloat16)
    with safe_open(str(tmp_path / "out" / "model.safetensors"), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}  # noqa: SIM118
    assert json.loads((tmp_path / "out" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert load_hf(tmp_path / "out").dtype == torch.bfloat16


def test_tokenizer_is_copied_with_its_special_ids(tmp_path, tokenizer_dir):
    export_hf(ours(), tmp_path / "out", tokenizer_dir=tokenizer_dir)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"]) == (1, 2)
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "out", local_files_only=True)
    assert tok("hello world")["input_ids"][-2:] == [3, 4]


def test_export_refuses_a_non_empty_directory_unless_forced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty; choose another OUT_DIR"):
        export_hf(ours(), out)
    with pytest.raises(ConfigError, match="not created by export-hf"):  # --force: ours only
        export_hf(ours(), out, force=True)
    assert (out / "keep.txt").exists()
    (out / "keep.txt").unlink()
    export_hf(ours(), out)
    (out / "keep.txt").write_text("x")  # a user's file in an earlier export: never deleted
    with pytest.raises(ConfigError, match=r"holds files export-hf did not write \(keep.txt\)"):
        export_hf(ours(), out, force=True)
    assert (out / "keep.txt").read_text() == "x"
    (out / "keep.txt").unlink()
    export_hf(ours(), out, force=True)  # an earlier export (only its own files) is replaced
    assert (out / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_import_rejects_other_models(tmp_path):
    transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(CheckpointError, match="only Llama loads into our decoder"):
        load_hf_into_llama(tmp_path / "gpt2")
    with pytest.raises(CheckpointError, match="no config.json"):
        load_hf_into_llama(tmp_path / "nothing")


def _tiny_gpt2_config(vocab_size: int = 1000):
    return transformers.GPT2Config(
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=64,
        vocab_size=vocab_size,
        bos_token_id=0,
        eos_token_id=0,
    )


def _tiny_llama_config():
    return transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1000,
        max_position_embeddings=64,
    )


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("as_file", [False, True])
def test_hf_config_builds_and_runs_through_the_same_interface(arch, as_file, tmp_path):
    config = _tiny_gpt2_config() if arch == "gpt2" else _tiny_llama_config()
    config.save_pretrained(tmp_path / arch)
    path = tmp_path / arch / "config.json" if as_file else tmp_path / arch
    model = build_model(ModelConfig(hf=str(path)), VOCAB).eval()
    assert isinstance(model, HFCausalLM) and isinstance(model, CausalLM)
    assert model.vocab_size == VOCAB  # random init: sized for the tokenizer
    assert len(model.blocks) == config.num_hidden_layers and model.max_seq_len == 64
    x = ids(t=20)
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (3, 20, VOCAB)
        torch.testing.assert_close(
            model.hidden_states(x) @ model.output_weight.T, logits, atol=1e-5, rtol=1e-5
        )
    assert model.hidden_states_exact
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())
    assert model.num_parameters(exclude_embeddings=True) < model.num_parameters()
    assert model.flops_per_token(64) > 6 * model.num_parameters(exclude_embeddings=True)
    assert model.config_dict()["hf"] == str(path)
    assert all(k.startswith("hf.") for k in model.state_dict())


def test_hf_directory_with_weights_loads_them(tmp_path):
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(_tiny_gpt2_config(VOCAB)).eval()
    hf.save_pretrained(tmp_path / "gpt2")
    model = build_model(ModelConfig(hf=str(tmp_path / "gpt2")), 90).eval()
    x = ids(t=20)
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf(x).logits)
    assert model.vocab_size == VOCAB and model.output_weight.dtype == torch.float32
    with pytest.raises(
        ConfigError, match="has only 101 embedding rows; train with the model's own tokenizer"
    ):
        build_model(ModelConfig(hf=str(tmp_path / "gpt2")), 500)


def test_hf_model_exports_as_itself(tmp_path):
    _tiny_llama_config().save_pretrained(tmp_path / "cfg")
    model = build_model(ModelConfig(hf=str(tmp_path / "cfg")), VOCAB).eval()
    export_hf(model, tmp_path / "out", dtype=torch.bfloat16)
    assert model.output_weight.dtype == torch.float32  # the caller's model is left as it was
    back = load_hf(tmp_path / "out")
    assert back.dtype == torch.bfloat16
    x = ids(t=20)
    with torch.no_grad():
        torch.testing.assert_close(back.float()(x).logits, model(x), atol=0.05, rtol=0.05)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: p / "missing", "does not exist; give a local transformers model directory"),
        (lambda p: p.mkdir() or p, "has no config.json"),
        (
            lambda p: (p.with_suffix(".json").write_text("{}"), p.with_suffix(".json"))[1],
            "no model_type",
        ),
        (
            lambda p: (
                p.with_suffix(".json").write_text('{"model_type": "no-such-model"}'),
                p.with_suffix(".json"),
            )[1],
            "cannot read the transformers config",
        ),
    ],
)
def test_bad_hf_paths_raise_config_errors(make, needle, tmp_path):
    path = make(tmp_path / "model")
    with pytest.raises(ConfigError, match=needle):
        build_model(ModelConfig(hf=str(path)), VOCAB)
