"""The data section of a run config, as validated data."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Characters per embedded domain when `max_chars_per_domain` is left at None: six domains of
# about 1M characters tokenize and train a 4k BPE in seconds on a 2-core CPU.
EMBEDDED_DEFAULT_MAX_CHARS = 1_000_000
# Embedded documents are cut (at a line end) to this length: more, smaller documents make the
# by-document split closer to val_fraction in every domain.
EMBEDDED_MAX_DOC_CHARS = 32_000

# Target size of one token shard; each shard holds a whole number of sequences.
DEFAULT_SHARD_TOKENS = 1 << 27  # 256 MiB of uint16


class TokenizerConfig(BaseModel):
    """Which tokenizer turns text into token ids."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["bpe", "hf", "tiktoken"] = Field(
        "bpe",
        description="bpe: a byte-level BPE trained on the corpus; hf: a local Hugging Face "
        "tokenizer folder; tiktoken: a local tiktoken BPE file",
    )
    vocab_size: int = Field(
        4096, ge=258, le=1 << 20, description="bpe: vocabulary to train, end-of-text included"
    )
    path: str | None = Field(
        None, description="hf: a local tokenizer folder; tiktoken: a local .tiktoken BPE file"
    )
    max_train_chars: int = Field(
        50_000_000,
        gt=0,
        description="bpe: train on an even sample of at most this many training characters",
    )
    # None guesses from the file name and falls back to GPT-2's.
    pattern: str | None = Field(
        None,
        description="tiktoken: pre-tokenizer regex, a name (gpt2, r50k, p50k, cl100k) or a "
        "pattern; default: from the file name, else gpt2",
    )

    @model_validator(mode="after")
    def _path_matches_kind(self) -> TokenizerConfig:
        if self.kind in ("hf", "tiktoken") and not self.path:
            raise ValueError(
                f"tokenizer.kind '{self.kind}' needs tokenizer.path "
                f"(a local {'tokenizer directory' if self.kind == 'hf' else '.tiktoken file'})"
            )
        if self.kind == "bpe" and self.path:
            raise ValueError(
                "tokenizer.path is only for kind 'hf' or 'tiktoken'; the 'bpe' tokenizer is "
                "trained from the corpus (drop path, or set kind)"
            )
        return self


class DataConfig(BaseModel):
    """What to train on and how it is cut into sequences."""

    model_config = ConfigDict(extra="forbid")

    sources: Literal["embedded"] | list[str] = Field(
        "embedded",
        description="'embedded' (the built-in corpus) or a list of files/folders (text, "
        ".jsonl[.gz|.zst], .parquet, Hugging Face save_to_disk folders); 'DOMAIN=PATH' names a "
        "source's domain; 'embedded' may be one entry among paths",
    )
    domains: list[str] | None = Field(None, description="keep only these domains (None: all)")
    domain_field: str | None = Field(
        None,
        description="where each record names its domain: a dotted path into the record "
        "(meta.redpajama_set_name) or a column name; None: an optional top-level 'domain'",
    )
    text_field: str = Field(
        "text", description="the record field (or column) that holds the document's text"
    )
    tokenizer: TokenizerConfig = Field(
        default_factory=TokenizerConfig, description="which tokenizer turns text into ids"
    )
    seq_len: int = Field(128, ge=2, le=1 << 20, description="tokens per training sequence")
    val_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="fraction of each domain's documents for validation"
    )
    seed: int = Field(0, ge=0, description="document order, cap and train/val split")
    # None: EMBEDDED_DEFAULT_MAX_CHARS for embedded domains, no cap for your own files.
    max_chars_per_domain: int | None = Field(
        None, gt=0, description="cap per domain (None: 1M characters embedded, no cap for files)"
    )
    mixture: Literal["natural", "uniform"] | dict[str, float] = Field(
        "natural",
        description="sampling weights: natural (by size), uniform, or {domain: weight}",
    )
    cache_dir: str | None = Field(
        None, description="cache folder (None: $LOSSREWEIGHT_CACHE, else ~/.cache/lossreweight)"
    )
    shard_size_tokens: int = Field(
        DEFAULT_SHARD_TOKENS, gt=0, description="tokens per shard file (2^27: 256 MiB of uint16)"
    )
    prepared: str | None = Field(
        None,
        description="train on this prepared-data folder as it is (its domains, tokenizer and "
        "seq_len), read-only; the corpus and tokenizer keys are then unused",
    )

    @field_validator("sources", mode="before")
    @classmethod
    def _one_path_is_a_list(cls, v: object) -> object:
        return [v] if isinstance(v, str) and v != "embedded" else v

    @field_validator("sources")
    @classmethod
    def _sources_not_empty(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not v:
            raise ValueError('sources is empty: give file/folder paths, or "embedded"')
        return v

    @field_validator("domains")
    @classmethod
    def _domains_not_empty(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("domains is an empty list: leave it out to keep every domain")
        return v

    @field_validator("mixture")
    @classmethod
    def _mixture_weights(cls, v: str | dict[str, float]) -> str | dict[str, float]:
        if isinstance(v, dict):
            check_mixture_weights(v)
        return v

    @model_validator(mode="after")
    def _shards_hold_a_sequence(self) -> DataConfig:
        if self.shard_size_tokens < self.seq_len:
            raise ValueError(
                f"shard_size_tokens ({self.shard_size_tokens}) is smaller than seq_len "
                f"({self.seq_len}): a shard must hold at least one sequence"
            )
        return self

    @field_validator("domain_field", "text_field")
    @classmethod
    def _field_path(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or any(not p for p in v.split("."))):
            raise ValueError(f"{v!r} is not a field name or dotted path (e.g. meta.source)")
        return v

    def source_list(self) -> list[str]:
        return ["embedded"] if self.sources == "embedded" else list(self.sources)


def check_mixture_weights(weights: dict[str, float]) -> None:
    """Mixture weights must be finite, >= 0, and not all zero."""
    if not weights:
        raise ValueError("mixture is an empty mapping: give a weight per domain")
    for name, w in weights.items():
        if not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise ValueError(f"mixture weight for '{name}' must be a finite number >= 0, got {w!r}")
    if sum(weights.values()) <= 0:
        raise ValueError("mixture weights are all zero: give at least one domain a weight > 0")
