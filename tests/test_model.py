"""The built-in Llama decoder and its config: shapes, causality, init, presets, errors."""

from __future__ import annotations

import math

import pytest
import torch

from lossreweight.config import load_config, preset_names
from lossreweight.errors import ConfigError
from lossreweight.model import CausalLM, LlamaModel, ModelConfig, build_model

PRESET_PARAMS = {
    "tiny": 1_377_408,  # (a pinned copy of the preset said 1_574_016: it had lost multiple_of: 64)
    "small": 123_587_328,  # GPT-2 small's 124M
    "gpt2-paper": 123_587_328,  # the same shape at 512 tokens (RoPE: no position table)
    "llama-1.4b": 1_345_423_360,
    "llama-7b": 6_738_415_616,  # exactly Llama-2-7B
}


def tiny(vocab: int = 97, **kw) -> LlamaModel:
    torch.manual_seed(0)
    cfg = ModelConfig(**{"dim": 32, "n_layers": 2, "n_heads": 4, "max_seq_len": 24, **kw})
    model = build_model(cfg, vocab)
    assert isinstance(model, LlamaModel)
    return model.eval()


def ids(b: int = 2, t: int = 16, vocab: int = 97, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (b, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kw", [{}, {"n_kv_heads": 2}, {"n_kv_heads": 1, "tie_embeddings": False}])
def test_shapes_and_interface(kw):
    model = tiny(**kw)
    x = ids()
    assert isinstance(model, CausalLM)
    assert model(x).shape == (2, 16, 97)
    assert model.hidden_states(x).shape == (2, 16, 32)
    assert model.output_weight.shape == (97, 32)
    assert isinstance(model.blocks, torch.nn.ModuleList) and len(model.blocks) == 2


@pytest.mark.parametrize("kw", [{}, {"n_kv_heads": 2}])
def test_future_tokens_do_not_change_past_logits(kw):
    model = tiny(**kw)
    x = ids()
    y = x.clone()
    y[:, 9:] = (y[:, 9:] + 1) % 97
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :9], b[:, :9], atol=0, rtol=0)
    assert (a[:, 9:] - b[:, 9:]).abs().max() > 1e-4


@pytest.mark.parametrize("tie", [True, False])
def test_hidden_states_times_output_weight_are_the_logits(tie):
    model = tiny(tie_embeddings=tie)
    x = ids()
    with torch.no_grad():
        torch.testing.assert_close(
            model.hidden_states(x) @ model.output_weight.T, model(x), atol=1e-6, rtol=1e-6
        )
    assert (model.output_weight is model.tok_embeddings.weight) == tie


def test_order_matters():
    # Without position information the last token would see the same bag of tokens in both.
    model = tiny()
    x = torch.tensor([[3, 7, 11, 5]])
    y = torch.tensor([[7, 3, 11, 5]])
    with torch.no_grad():
        assert (model(x)[0, -1] - model(y)[0, -1]).abs().max() > 1e-4


def test_rope_tables_are_not_saved_and_rebuild_after_meta_init():
    model = tiny()
    assert not any("rope" in k for k in model.state_dict())
    with torch.device("meta"):
        meta = build_model(model.cfg)
    meta.to_empty(device="cpu")
    meta.init_weights()
    meta.load_state_dict(model.state_dict())
    x = ids()
    with torch.no_grad():
        torch.testing.assert_close(meta.eval()(x), model(x), atol=0, rtol=0)


def test_init_is_deterministic_and_scaled():
    a, b = tiny(n_layers=4), tiny(n_layers=4)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    big = build_model(ModelConfig(dim=256, n_layers=8, n_heads=4), 1000)
    assert math.isclose(big.blocks[0].attn.wq.weight.std().item(), 0.02, rel_tol=0.05)
    assert math.isclose(big.blocks[0].attn.wo.weight.std().item(), 0.02 / 4, rel_tol=0.05)
    assert math.isclose(big.blocks[0].mlp.w_down.weight.std().item(), 0.02 / 4, rel_tol=0.05)
    assert torch.equal(big.norm.weight, torch.ones(256))
    assert all(m.bias is None for m in big.modules() if isinstance(m, torch.nn.Linear))


def test_trains_one_step():
    model = tiny(dropout=0.1).train()
    x = ids()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(3):
        logits = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 97), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_parameter_counts_and_flops():
    model = tiny(tie_embeddings=False)
    d, v, f = 32, 97, model.cfg.ffn_dim
    per_block = 4 * d * d + 3 * d * f + 2 * d
    assert model.num_parameters() == 2 * v * d + 2 * per_block + d
    assert model.num_parameters(exclude_embeddings=True) == v * d + 2 * per_block + d
    matmul = v * d + 2 * per_block + d
    assert model.flops_per_token(16) == 6 * matmul + 12 * 2 * d * 16
    tied = tiny()
    assert tied.num_parameters() == v * d + 2 * per_block + d
    # The tied matrix is still a matmul.
    assert tied.flops_per_token(16) == model.flops_per_token(16)


def test_ffn_hidden_follows_the_llama_rule():
    assert ModelConfig(dim=4096, n_heads=32).ffn_dim == 11008
    assert ModelConfig(dim=128).ffn_dim == 512
    assert ModelConfig(dim=128, multiple_of=64).ffn_dim == 384
    assert ModelConfig(dim=128, ffn_hidden=200).ffn_dim == 200


@pytest.mark.parametrize("name", preset_names())
def test_preset_parameter_counts_on_meta_device(name):
    # The shipped preset, through the real loader; its vocabulary is the tokenizer's size.
    cfg = load_config(name)
    vocab = cfg.model.vocab_size or cfg.data.tokenizer.vocab_size
    with torch.device("meta"):
        model = build_model(cfg.model, vocab)
    assert model.num_parameters() == PRESET_PARAMS[name]
    assert model.output_weight.is_meta


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ({"dim": 100, "n_heads": 3}, "model.dim=100 is not divisible by model.n_heads=3"),
        ({"dim": 96, "n_heads": 4, "n_kv_heads": 3}, "not a multiple of model.n_kv_heads=3"),
        ({"dim": 6, "n_heads": 2}, "even head_dim"),
        ({"n_layers": 0}, "model.n_layers: Input should be greater than or equal to 1 (got 0)"),
        ({"dropout": 1.0}, "model.dropout"),
        ({"dims": 64}, "model.dims: unknown key; valid keys are dim,"),
        ({"hf": " "}, "model.hf is empty"),
    ],
)
def test_bad_config_raises_config_error(section, needle):
    with pytest.raises(ConfigError) as info:
        ModelConfig.from_dict(section)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_vocab_errors():
    with pytest.raises(ConfigError, match="vocabulary size is unknown"):
        build_model(ModelConfig())
    with pytest.raises(
        ConfigError, match="model.vocab_size=100 is smaller than the tokenizer's 200"
    ):
        build_model(ModelConfig(vocab_size=100), 200)
    assert build_model(ModelConfig(dim=32, n_layers=1, vocab_size=128), 100).vocab_size == 128


def test_sequence_longer_than_max_seq_len_is_a_config_error():
    with pytest.raises(ConfigError, match="set model.max_seq_len to at least 25"):
        tiny()(ids(t=25))


def test_config_dict_rebuilds_the_same_model():
    model = tiny(n_kv_heads=2)
    cfg = ModelConfig.from_dict(model.config_dict())
    assert cfg.vocab_size == 97 and cfg.n_kv_heads == 2 and cfg.ffn_hidden == model.cfg.ffn_dim
    torch.manual_seed(0)
    again = build_model(cfg)
    for p, q in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(p, q)
