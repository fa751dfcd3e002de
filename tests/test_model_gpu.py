"""GPU-only: the decoder under bf16 autocast, flash attention and torch.compile."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lossreweight.model import ModelConfig, build_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

VOCAB = 512


def model_and_batch(**kw):
    torch.manual_seed(0)
    cfg = ModelConfig(**{"dim": 256, "n_layers": 2, "n_heads": 4, "max_seq_len": 256, **kw})
    model = build_model(cfg, VOCAB).cuda()
    x = torch.randint(0, VOCAB, (4, 257), device="cuda")
    return model, x[:, :-1], x[:, 1:]


@pytest.mark.parametrize("kw", [{}, {"n_kv_heads": 2}])
def test_bf16_autocast_matches_float32_and_runs_flash_attention(kw):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model, x, _ = model_and_batch(**kw)
    model.eval()
    with torch.no_grad():
        ref = model(x)
        # Only the flash kernel allowed: fails if our layout or dtypes would fall back.
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION), torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max()


def test_compiled_training_step_matches_eager():
    model, x, y = model_and_batch(n_kv_heads=2, dropout=0.0)
    compiled = torch.compile(model, fullgraph=True)  # any graph break fails here

    def grads(fn):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = fn(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    loss_e, g_e = grads(model)
    loss_c, g_c = grads(compiled)
    assert torch.allclose(loss_e, loss_c, rtol=1e-2)
    for a, b in zip(g_e, g_c, strict=True):
        assert (a - b).norm() <= 0.05 * a.norm() + 1e-6
