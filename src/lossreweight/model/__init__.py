"""Models: the built-in Llama decoder, any local `transformers` causal LM, and HF export."""

from lossreweight.model.base import CausalLM
from lossreweight.model.factory import build_model
from lossreweight.model.hf_export import export_hf, load_hf_into_llama
from lossreweight.model.hf_model import HFCausalLM
from lossreweight.model.llama import LlamaModel
from lossreweight.model.load import load_model_weights, load_run_model
from lossreweight.model.model_config import ModelConfig

__all__ = [
    "CausalLM",
    "HFCausalLM",
    "LlamaModel",
    "ModelConfig",
    "build_model",
    "export_hf",
    "load_hf_into_llama",
    "load_model_weights",
    "load_run_model",
]
