"""A Llama-architecture decoder in one file.

token embedding -> N x [x + attn(rmsnorm(x)), x + swiglu(rmsnorm(x))] -> rmsnorm -> output.
No biases. Rotary position embeddings use Hugging Face's half-split layout (the first half of
each head's features rotates against the second half), so the weights load into
`transformers.LlamaForCausalLM` as they are, without permuting q and k.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lossreweight.errors import ConfigError
from lossreweight.model.base import CausalLM
from lossreweight.model.model_config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 (as HF Llama does) so bf16 activations keep their precision.
        return F.rms_norm(x.float(), (x.size(-1),), eps=self.eps).type_as(x) * self.weight


def rope_tables(
    head_dim: int, seq_len: int, theta: float, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of position * frequency, each [seq_len, head_dim], in float32 as HF does.
    Feature i and i + head_dim/2 share a frequency (the half-split layout)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim)
    angles = torch.outer(torch.arange(seq_len, device=device).float(), inv_freq).repeat(1, 2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate [B, T, H, head_dim] features in pairs (x1, x2) = (x[i], x[i + head_dim/2]):
    (x1 cos - x2 sin, x2 cos + x1 sin). `cos` and `sin` are [T, 1, head_dim]."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.dropout = cfg.dropout
        self.wq = nn.Linear(cfg.dim, self.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(self.n_heads * self.head_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = apply_rope(self.wq(x).view(B, T, self.n_heads, self.head_dim), cos, sin)
        k = apply_rope(self.wk(x).view(B, T, self.n_kv_heads, self.head_dim), cos, sin)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim)
        # sdpa wants [B, H, T, head_dim]
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if self.n_kv_heads != self.n_heads:  # GQA: each kv head serves a group of query heads
            k = k.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
            v = v.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        return self.wo(y.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w_gate = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w_up = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w_down = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x), cos, sin))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


class LlamaModel(CausalLM):
    """The built-in decoder. `cfg.vocab_size` must be set (`build_model` does it)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.hf is not None:
            raise ConfigError("LlamaModel builds our own decoder; model.hf is set: use build_model")
        if cfg.vocab_size is None:
            raise ConfigError(
                "model.vocab_size is not set: build with build_model(cfg, vocab_size)"
            )
        self.cfg = cfg.resolved()
        self.vocab_size, self.dim, self.max_seq_len = cfg.vocab_size, cfg.dim, cfg.max_seq_len
        self.n_layers, self.attn_width = cfg.n_layers, cfg.n_heads * cfg.head_dim

        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(Block(self.cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        # Non-persistent: derived from the config, so never saved in checkpoints.
        self.register_buffer("rope_cos", torch.empty(0), persistent=False)
        self.register_buffer("rope_sin", torch.empty(0), persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Random init (normal std=init_std, residual projections scaled by 1/sqrt(2 * n_layers))
        and the RoPE tables. Call again after `to_empty()` on a model built on the meta device."""
        cfg = self.cfg
        self.init_rope_tables()
        # GPT-2's scaling: the residual stream sums 2 * n_layers projections.
        residual_std = cfg.init_std / math.sqrt(2 * cfg.n_layers)
        for name, p in self.named_parameters():
            if p.ndim == 1:
                nn.init.ones_(p)  # RMSNorm gains
            elif name.endswith(("attn.wo.weight", "mlp.w_down.weight")):
                nn.init.normal_(p, std=residual_std)
            else:
                nn.init.normal_(p, std=cfg.init_std)

    def init_rope_tables(self) -> None:
        """(Re)compute the RoPE cos/sin buffers on the device of the weights."""
        cfg, device = self.cfg, self.tok_embeddings.weight.device
        self.rope_cos, self.rope_sin = rope_tables(
            cfg.head_dim, cfg.max_seq_len, cfg.rope_theta, device
        )

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        seq_len = input_ids.size(1)
        if seq_len > self.max_seq_len:
            raise ConfigError(
                f"sequences have {seq_len} tokens but model.max_seq_len is {self.max_seq_len}; "
                f"set model.max_seq_len to at least {seq_len}"
            )
        # [T, 1, head_dim]: broadcasts over the heads of [B, T, H, head_dim]
        cos, sin = self.rope_cos[:seq_len, None], self.rope_sin[:seq_len, None]
        x = self.tok_embeddings(input_ids)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.norm(x)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.output(self.hidden_states(input_ids))

    @property
    def output_weight(self) -> torch.Tensor:
        return self.output.weight

    def config_dict(self) -> dict[str, Any]:
        return self.cfg.model_dump()
