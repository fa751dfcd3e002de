"""`ModelConfig`: the `model:` section of a run config, as validated plain data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lossreweight.errors import ConfigError


class ModelConfig(BaseModel):
    """Shape of the built-in Llama decoder, or `hf` to train a `transformers` model instead.

    The defaults are the `tiny` CPU demo model. When `hf` is set, the shape fields are
    ignored: the model comes from that config (random init) or directory (its weights too).
    """

    model_config = ConfigDict(extra="forbid")

    dim: int = Field(128, ge=1, description="width of the residual stream")
    n_layers: int = Field(4, ge=1, description="number of transformer blocks")
    n_heads: int = Field(4, ge=1, description="query heads; head_dim = dim / n_heads")
    n_kv_heads: int | None = Field(None, ge=1, description="key/value heads (GQA); None = n_heads")
    ffn_hidden: int | None = Field(
        None, ge=1, description="SwiGLU hidden width; None = 8/3*dim rounded up to multiple_of"
    )
    multiple_of: int = Field(
        256, ge=1, description="rounding of the default ffn_hidden (Llama: 256)"
    )
    norm_eps: float = Field(1e-5, gt=0.0, description="epsilon of the RMSNorm layers")
    rope_theta: float = Field(10000.0, gt=0.0, description="RoPE base wavelength")
    max_seq_len: int = Field(1024, ge=1, description="longest sequence (RoPE table size)")
    vocab_size: int | None = Field(None, ge=1, description="None = the tokenizer's vocabulary size")
    tie_embeddings: bool = Field(True, description="share the embedding and output projection")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="attention and residual dropout")
    init_std: float = Field(0.02, gt=0.0, description="std of the normal weight init")
    hf: str | None = Field(
        None, description="a local transformers model directory or config.json to train instead"
    )

    @model_validator(mode="after")
    def _check_shape(self) -> ModelConfig:
        if self.hf is not None:
            if not self.hf.strip():
                raise ValueError(
                    "model.hf is empty; give a local directory or config.json, or remove it"
                )
            return self
        if self.dim % self.n_heads:
            fits = [h for h in range(1, 129) if self.dim % h == 0 and self.dim // h % 2 == 0]
            near = sorted(fits, key=lambda h: abs(h - self.n_heads))[:3]
            raise ValueError(
                f"model.dim={self.dim} is not divisible by model.n_heads={self.n_heads}; "
                f"use n_heads in {sorted(near)} or change dim to a multiple of n_heads"
            )
        if self.head_dim % 2:
            raise ValueError(
                f"head_dim = model.dim / model.n_heads = {self.head_dim} is odd; rotary embeddings "
                "need an even head_dim: change dim or n_heads"
            )
        if self.n_heads % self.kv_heads:
            raise ValueError(
                f"model.n_heads={self.n_heads} is not a multiple of "
                f"model.n_kv_heads={self.n_kv_heads}; "
                "each key/value head serves a whole group of query heads (e.g. n_kv_heads=1 or "
                f"{self.n_heads})"
            )
        return self

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def ffn_dim(self) -> int:
        """Llama's rule: 2/3 of a 4*dim MLP (same parameters as a plain one), rounded up."""
        if self.ffn_hidden is not None:
            return self.ffn_hidden
        hidden = int(2 * 4 * self.dim / 3)
        return self.multiple_of * -(-hidden // self.multiple_of)

    def resolved(self, vocab_size: int | None = None) -> ModelConfig:
        """A copy with n_kv_heads, ffn_hidden (and vocab_size if given) filled in."""
        update: dict[str, Any] = {}
        if self.hf is None:
            update = {"n_kv_heads": self.kv_heads, "ffn_hidden": self.ffn_dim}
        if vocab_size is not None:
            update["vocab_size"] = vocab_size
        return self.model_copy(update=update)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, where: str = "model") -> ModelConfig:
        """Validate a `model:` section, raising `ConfigError` with one readable line."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"the {where} section must be a mapping of keys to values, got {data!r}"
            )
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, where, cls)) from None


def describe_validation_error(exc: ValidationError, where: str, model: type[BaseModel]) -> str:
    """Turn pydantic's multi-line report into one line: `where.key: problem; ...`."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in (where, *err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key; valid keys are {', '.join(model.model_fields)}"
        elif "input" in err and err["type"] != "value_error":
            msg = f"{msg} (got {err['input']!r})"
        parts.append(f"{loc}: {msg}" if err["loc"] else msg)  # whole-model messages name their keys
    return "; ".join(parts)
