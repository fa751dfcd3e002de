"""`build_model`: a `ModelConfig` and the tokenizer's vocabulary size -> a `CausalLM`."""

from __future__ import annotations

from lossreweight.errors import ConfigError
from lossreweight.model.base import CausalLM
from lossreweight.model.model_config import ModelConfig


def build_model(cfg: ModelConfig, vocab_size: int | None = None) -> CausalLM:
    """Our `LlamaModel`, or an `HFCausalLM` when `cfg.hf` is set.

    `vocab_size` is the tokenizer's; `cfg.vocab_size`, when set, overrides it (e.g. padded to
    a multiple of 64 for faster matmuls) and must not be smaller. Build under
    `with torch.device("meta"):` to count parameters or to initialise later (FSDP2):
    then `model.to_empty(device=...)` and `model.init_weights()`.
    """
    if vocab_size is not None and cfg.vocab_size is not None and cfg.vocab_size < vocab_size:
        raise ConfigError(
            f"model.vocab_size={cfg.vocab_size} is smaller than the tokenizer's "
            f"{vocab_size} tokens; "
            f"remove model.vocab_size or set it to at least {vocab_size}"
        )
    if cfg.hf is not None:
        from lossreweight.model.hf_model import build_hf_model

        return build_hf_model(cfg, vocab_size)
    vocab = cfg.vocab_size or vocab_size
    if vocab is None:
        raise ConfigError(
            "the vocabulary size is unknown: pass the tokenizer's vocab_size "
            "or set model.vocab_size"
        )
    from lossreweight.model.llama import LlamaModel

    return LlamaModel(cfg.resolved(vocab))
