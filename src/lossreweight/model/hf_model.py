"""`HFCausalLM`: any local `transformers` causal LM behind the `CausalLM` interface.

Nothing is ever downloaded: configs and weights come from local paths only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lossreweight.errors import ConfigError
from lossreweight.model.base import CausalLM
from lossreweight.model.model_config import ModelConfig

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


class HFCausalLM(CausalLM):
    """Wraps a `transformers` `*ForCausalLM` model; its weights live under `hf.`."""

    def __init__(self, hf_model: nn.Module, source: str) -> None:
        super().__init__()
        self.hf = hf_model
        self.source = source
        text = hf_model.config.get_text_config()
        self.vocab_size = hf_model.get_output_embeddings().weight.shape[0]
        self.dim = text.hidden_size
        self.max_seq_len = getattr(text, "max_position_embeddings", None)
        self.n_layers = text.num_hidden_layers
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        self.attn_width = text.num_attention_heads * head_dim
        self._blocks_name = _find_blocks(hf_model, self.n_layers)
        # Skip building a KV cache during training forwards.
        self._call_kwargs = {"use_cache": False} if hasattr(hf_model.config, "use_cache") else {}

    @property  # not an attribute: registering the list twice would duplicate state_dict keys
    def blocks(self) -> nn.ModuleList:
        return self.hf.get_submodule(self._blocks_name)

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        # The base model's last hidden state is after the final norm for decoder-only models.
        return self.hf.base_model(input_ids=input_ids, **self._call_kwargs).last_hidden_state

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=input_ids, **self._call_kwargs).logits

    @property
    def output_weight(self) -> torch.Tensor:
        return self.hf.get_output_embeddings().weight

    @property
    def hidden_states_exact(self) -> bool:
        """False when logits are not just hidden_states @ output_weight.T (a head bias, logit
        scaling or soft-capping, as in Gemma 2 or Cohere): then use the logits path for the loss."""
        head = self.hf.get_output_embeddings()
        text = self.hf.config.get_text_config()
        scaled = any(
            getattr(text, a, None) not in (None, 1.0)
            for a in ("final_logit_softcapping", "logit_scale")
        )
        return isinstance(head, nn.Linear) and head.bias is None and not scaled

    def config_dict(self) -> dict[str, Any]:
        return {
            "hf": self.source,
            "vocab_size": self.vocab_size,
            "hf_config": self.hf.config.to_dict(),
        }


def _find_blocks(hf_model: nn.Module, n_layers: int) -> str:
    """The name of the ModuleList holding the decoder layers.

    For example `model.layers` or `transformer.h`.
    """
    for name, module in hf_model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers and n_layers > 0:
            return name
    raise ConfigError(
        f"cannot find the {n_layers} transformer blocks of {type(hf_model).__name__}; "
        "this model type is not supported by model.hf"
    )


def build_hf_model(
    cfg: ModelConfig, vocab_size: int | None, *, load_weights: bool = True
) -> HFCausalLM:
    """Build `cfg.hf` in float32: with its weights when it is a directory that has them (and
    `load_weights`), else randomly initialised from the config, with `vocab_size` rows."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: we pass local_files_only too
    import transformers

    assert cfg.hf is not None
    path = Path(cfg.hf).expanduser()
    config = _load_config(path)
    has_weights = path.is_dir() and any((path / f).is_file() for f in WEIGHT_FILES)
    wanted = cfg.vocab_size or vocab_size
    try:
        if has_weights:
            model_vocab = config.get_text_config().vocab_size
            if wanted is not None and wanted > model_vocab:
                raise ConfigError(
                    f"the tokenizer has {wanted} tokens but the model at model.hf={cfg.hf} "
                    f"has only {model_vocab} embedding rows; train with the model's own tokenizer"
                )
            if not load_weights:
                return HFCausalLM(transformers.AutoModelForCausalLM.from_config(config), str(path))
            hf = transformers.AutoModelForCausalLM.from_pretrained(
                path, config=config, local_files_only=True, **_dtype_kwarg(transformers)
            )
        else:
            if wanted is not None:
                _set_vocab_size(config.get_text_config(), wanted)
            hf = transformers.AutoModelForCausalLM.from_config(config)
    except ValueError as exc:  # e.g. a config type with no causal-LM class
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            f"model.hf={cfg.hf}: cannot build a causal LM from it: {_first_line(exc)}"
        ) from None
    return HFCausalLM(hf.float(), str(path))


def _load_config(path: Path):
    import transformers

    if not path.exists():
        raise ConfigError(
            f"model.hf={str(path)!r} does not exist; give a local transformers model directory "
            "or a config.json file (nothing is downloaded)"
        )
    try:
        if path.is_file():
            data = json.loads(path.read_text())
            model_type = data.pop("model_type", None) if isinstance(data, dict) else None
            if not model_type:
                raise ConfigError(
                    f"model.hf={path} is not a transformers config.json (no model_type)"
                )
            return transformers.AutoConfig.for_model(model_type, **data)
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"model.hf={path} has no config.json; is it a transformers model directory?"
            )
        return transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    except (ValueError, OSError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            f"model.hf={path}: cannot read the transformers config: {_first_line(exc)}"
        ) from None


def _set_vocab_size(config, vocab_size: int) -> None:
    config.vocab_size = vocab_size
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):  # ids of another tokenizer
        if isinstance(getattr(config, name, None), int) and getattr(config, name) >= vocab_size:
            setattr(config, name, None)


def _dtype_kwarg(transformers_module) -> dict[str, Any]:
    # transformers 5 renamed `torch_dtype` to `dtype`; float32 master weights for training.
    major = int(transformers_module.__version__.split(".")[0])
    return {"dtype": torch.float32} if major >= 5 else {"torch_dtype": torch.float32}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
