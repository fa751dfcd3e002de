"""Hugging Face format: export our decoder as `LlamaForCausalLM`, and import it back.

Our RoPE already uses HF's half-split layout, so the conversion is a renaming of tensors.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from lossreweight.errors import CheckpointError, ConfigError, UserError
from lossreweight.model.base import CausalLM
from lossreweight.model.hf_model import HFCausalLM
from lossreweight.model.llama import LlamaModel
from lossreweight.model.model_config import ModelConfig
from lossreweight.rundir import CHECKPOINTS_DIR, is_run_dir
from lossreweight.safe_files import (
    WORK_MARKER,
    WorkDir,
    foreign_entries,
    list_files,
    read_manifest,
    remove_stale_work_dirs,
    write_manifest,
)

# Written into every export: `--force` replaces only a directory holding it, i.e. one that
# export_hf created, never a run, its checkpoints, or a stranger's folder.
EXPORT_MARKER = ".lossreweight-export"

# Our name inside `blocks.{i}.` -> HF's inside `model.layers.{i}.`
_BLOCK_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn.wq.weight": "self_attn.q_proj.weight",
    "attn.wk.weight": "self_attn.k_proj.weight",
    "attn.wv.weight": "self_attn.v_proj.weight",
    "attn.wo.weight": "self_attn.o_proj.weight",
    "mlp_norm.weight": "post_attention_layernorm.weight",
    "mlp.w_gate.weight": "mlp.gate_proj.weight",
    "mlp.w_up.weight": "mlp.up_proj.weight",
    "mlp.w_down.weight": "mlp.down_proj.weight",
}
# Tokenizer files an export copies (what an export made before its marker listed its files
# may hold besides the model files).
_TOKENIZER_FILES = {
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "added_tokens.json",
    "tokenizer_info.json",
}
# Files we write ourselves; a tokenizer directory's copies of them are skipped.
_MODEL_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
}


def hf_names(n_layers: int, tied: bool) -> dict[str, str]:
    """Our state_dict name -> `LlamaForCausalLM` name (no `lm_head` when tied: HF re-ties it)."""
    names = {
        "tok_embeddings.weight": "model.embed_tokens.weight",
        "norm.weight": "model.norm.weight",
    }
    if not tied:
        names["output.weight"] = "lm_head.weight"
    for i in range(n_layers):
        for ours, theirs in _BLOCK_NAMES.items():
            names[f"blocks.{i}.{ours}"] = f"model.layers.{i}.{theirs}"
    return names


def llama_hf_config(
    cfg: ModelConfig, dtype: torch.dtype, token_ids: dict[str, int]
) -> dict[str, Any]:
    """config.json of `LlamaForCausalLM` for a resolved `cfg` (old and new transformers alike)."""
    dtype_name = str(dtype).removeprefix("torch.")
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        # transformers < 5 reads rope_theta; 5 reads rope_parameters.
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": cfg.init_std,
        "pretraining_tp": 1,
        "use_cache": True,
        "bos_token_id": token_ids.get("bos_token_id"),
        "eos_token_id": token_ids.get("eos_token_id"),
        "pad_token_id": token_ids.get("pad_token_id"),
        "torch_dtype": dtype_name,
        "dtype": dtype_name,
        "transformers_version": _transformers_version(),
    }


def export_hf(
    model: CausalLM,
    out_dir: str | Path,
    tokenizer_dir: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
    force: bool = False,
) -> Path:
    """Write `model` as a Hugging Face model directory that `AutoModelForCausalLM.from_pretrained`
    loads offline. Our decoder becomes a `LlamaForCausalLM`; an `HFCausalLM` is saved as itself.
    The tokenizer files are copied when given. The directory appears whole or not at all.
    `force` replaces an earlier export (see `check_out_dir`), nothing else."""
    out_dir = real_out_dir(Path(out_dir))
    check_out_dir(out_dir, force)
    token_ids = _special_token_ids(Path(tokenizer_dir)) if tokenizer_dir else {}
    try:
        _write_export(model, out_dir, tokenizer_dir, dtype, token_ids)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(
                f"no space left on the device while exporting to {out_dir} (nothing was kept; "
                "an earlier export there is as it was): free disk space, or export to another "
                "disk"
            ) from None
        raise
    return out_dir


def _write_export(
    model: CausalLM,
    out_dir: Path,
    tokenizer_dir: str | Path | None,
    dtype: torch.dtype,
    token_ids: dict[str, int],
) -> None:
    with _atomic_dir(out_dir) as tmp:
        if isinstance(model, LlamaModel):
            _write_llama(model, tmp, dtype, token_ids)
        elif isinstance(model, HFCausalLM):
            hf = model.hf
            if model.output_weight.dtype != dtype:
                hf = copy.deepcopy(hf).to(dtype)  # leave the caller's model as it is
            hf.save_pretrained(tmp)
        else:
            raise TypeError(
                f"export_hf needs a LlamaModel or HFCausalLM, got {type(model).__name__}"
            )
        if tokenizer_dir:
            _copy_tokenizer(Path(tokenizer_dir), tmp)
        for weights in tmp.glob("*.safetensors"):
            _check_whole(weights)
        # The marker lists the files written: --force later replaces a folder holding these
        # and nothing else (a user's README added to an export is never deleted).
        write_manifest(
            tmp,
            EXPORT_MARKER,
            list_files(tmp) - {WORK_MARKER},
            written_by="lossreweight export-hf; --force may replace exactly these files",
        )
        os.unlink(tmp / WORK_MARKER)


def _check_whole(path: Path) -> None:
    """A safetensors file as long as its header says: a write that a full disk cut short (and
    a writer that did not say so) is an ENOSPC naming the file, not a broken export."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n)) if 0 < n <= size else {}
        end = max(
            (v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0
        )
    except (ValueError, KeyError, TypeError, IndexError):
        end = -1
    if end < 0 or 8 + n + end != size:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (written short)", str(path))


def _write_llama(
    model: LlamaModel, out: Path, dtype: torch.dtype, token_ids: dict[str, int]
) -> None:
    from safetensors.torch import save_file

    cfg = model.cfg
    state = model.state_dict()
    tensors = {
        theirs: state[ours].detach().to(device="cpu", dtype=dtype).contiguous()
        for ours, theirs in hf_names(cfg.n_layers, cfg.tie_embeddings).items()
    }
    path = out / "model.safetensors"
    try:
        save_file(tensors, path, metadata={"format": "pt"})  # HF checks "format"
    except OSError:
        raise
    except Exception as exc:  # safetensors' own error wraps the OS's
        if "StorageFull" in str(exc) or "os error 28" in str(exc):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
        raise
    _write_json(out / "config.json", llama_hf_config(cfg, dtype, token_ids))
    generation = {
        k: v for k, v in token_ids.items() if k in ("bos_token_id", "eos_token_id", "pad_token_id")
    }
    _write_json(
        out / "generation_config.json",
        {"_from_model_config": True, **generation, "transformers_version": _transformers_version()},
    )


def load_hf_into_llama(path: str | Path) -> LlamaModel:
    """Read a `LlamaForCausalLM` directory (ours or any plain Llama) into our `LlamaModel`.

    The weights are loaded as float32.
    """
    from safetensors import safe_open

    path = Path(path)
    hf_cfg = _read_llama_config(path)
    cfg = _model_config_from_hf(hf_cfg, path)
    files = _safetensors_files(path)
    ours_by_hf = {
        theirs: ours for ours, theirs in hf_names(cfg.n_layers, cfg.tie_embeddings).items()
    }
    state: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                if key.endswith("rotary_emb.inv_freq"):
                    continue  # old checkpoints stored the RoPE table; we recompute it
                if key == "lm_head.weight" and cfg.tie_embeddings:
                    continue
                if key not in ours_by_hf:
                    raise CheckpointError(
                        f"{file}: unexpected tensor {key!r} for a plain Llama model"
                    )
                state[ours_by_hf[key]] = f.get_tensor(key).float()
    missing = sorted(set(ours_by_hf.values()) - set(state))
    if missing:
        raise CheckpointError(
            f"{path}: the weights lack {len(missing)} tensors, e.g. {missing[0]!r}"
        )
    from lossreweight.model.load import load_state_into

    with torch.device("meta"):  # skip a random init that the weights overwrite
        model = LlamaModel(cfg)
    load_state_into(model, state, source=str(path), assign=True)
    return model


def _read_llama_config(path: Path) -> dict[str, Any]:
    file = path / "config.json"
    if not file.is_file():
        raise CheckpointError(f"{path} has no config.json; is it a Hugging Face model directory?")
    data = json.loads(file.read_text())
    if data.get("model_type") != "llama":
        raise CheckpointError(
            f"{path} holds a {data.get('model_type')!r} model; only Llama loads into our decoder "
            "(train other models with model.hf instead)"
        )
    return data


def _model_config_from_hf(hf: dict[str, Any], path: Path) -> ModelConfig:
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    unsupported = {
        "hidden_act": hf.get("hidden_act", "silu") != "silu",
        "attention_bias": bool(hf.get("attention_bias")),
        "mlp_bias": bool(hf.get("mlp_bias")),
        "rope scaling": rope.get("rope_type", rope.get("type", "default")) != "default",
    }
    heads = hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, hf["hidden_size"] // heads):
        unsupported["head_dim"] = True
    bad = [k for k, v in unsupported.items() if v]
    if bad:
        raise CheckpointError(
            f"{path}: our decoder does not support {', '.join(bad)} of this Llama; use model.hf"
        )
    shape = dict(
        dim=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"],
        n_heads=heads,
        n_kv_heads=hf.get("num_key_value_heads") or heads,
        ffn_hidden=hf["intermediate_size"],
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        rope_theta=rope.get("rope_theta") or hf.get("rope_theta", 10000.0),
        max_seq_len=hf.get("max_position_embeddings", 2048),
        vocab_size=hf["vocab_size"],
        tie_embeddings=hf.get("tie_word_embeddings", False),
        init_std=hf.get("initializer_range", 0.02),
    )
    return ModelConfig.from_dict(shape, where=f"{path / 'config.json'}")


def _safetensors_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [path / s for s in shards]
    if (path / "model.safetensors").is_file():
        return [path / "model.safetensors"]
    raise CheckpointError(f"{path} has no model.safetensors; re-save the model with safetensors")


def check_out_dir(out_dir: Path, force: bool) -> None:
    """A new or empty `out_dir`, or with `force` an earlier export (it holds EXPORT_MARKER).

    `--force` never replaces a run directory, anything in a run's checkpoints, or a folder
    export_hf did not create: those are refused whatever the flag says."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output directory {out_dir} is a file; choose another OUT_DIR")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    ours = (out_dir / EXPORT_MARKER).is_file()
    protected = _protected(out_dir)
    if protected:
        raise ConfigError(
            f"output directory {out_dir} is {protected}; it is never replaced, --force or not: "
            "choose another OUT_DIR"
        )
    if not force:
        hint = (
            "pass --force to replace this earlier export"
            if ours
            else "export into a new or empty one"
        )
        raise ConfigError(
            f"output directory {out_dir} is not empty; choose another OUT_DIR or {hint}"
        )
    if not ours:
        raise ConfigError(
            f"output directory {out_dir} was not created by export-hf "
            f"(no {EXPORT_MARKER} file), so --force "
            "does not replace it; choose another OUT_DIR, or empty it yourself"
        )
    foreign = foreign_entries(out_dir, _export_files(out_dir), ignore=[EXPORT_MARKER])
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise ConfigError(
            f"output directory {out_dir} holds files export-hf did not write "
            f"({', '.join(foreign[:3])}{more}), so --force does not replace it: move them out, "
            "or export into another OUT_DIR"
        )


def _export_files(out_dir: Path) -> set[str]:
    """The files an earlier export wrote: its marker's list, or for an export made before
    the marker listed them, the names export-hf writes (model files, tokenizer files)."""
    listed = read_manifest(out_dir, EXPORT_MARKER)
    if listed is not None:
        return listed
    return {p.name for p in out_dir.iterdir() if p.name in _MODEL_FILES | _TOKENIZER_FILES} | {
        p.name for p in out_dir.glob("model-*-of-*.safetensors")
    }


def real_out_dir(out_dir: Path) -> Path:
    """OUT_DIR with a symlink followed once, here: the export replaces the folder the link
    names, never the link's own folder, and a link to nowhere is refused."""
    if out_dir.is_symlink():
        if not out_dir.exists():
            raise ConfigError(
                f"output directory {out_dir} is a symbolic link to nothing; remove it or "
                "create its target"
            )
        return out_dir.resolve()
    return out_dir


def _protected(out_dir: Path) -> str | None:
    """Why `out_dir` must never be replaced, or None: a run, or inside a run's checkpoints."""
    if is_run_dir(out_dir):
        return "a training run directory"
    resolved = out_dir.resolve()
    for parent in resolved.parents:
        if is_run_dir(parent) and resolved.is_relative_to(parent / CHECKPOINTS_DIR):
            return f"inside the checkpoints of the run {parent}"
    return None


@contextlib.contextmanager
def _atomic_dir(out_dir: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `out_dir` by renames. What a
    killed export left beside `out_dir` (its temporary or replaced folder) goes first."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_work_dirs(out_dir.parent, f".{out_dir.name}.tmp-")
    remove_stale_work_dirs(out_dir.parent, f".{out_dir.name}.old-", markers=[EXPORT_MARKER])
    work = WorkDir(out_dir.parent, f".{out_dir.name}.tmp-")
    try:
        yield work.path
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.replace(out_dir, old)
            os.replace(work.path, out_dir)
            shutil.rmtree(old)
        else:
            os.replace(work.path, out_dir)
        work.close(remove=False)
    except BaseException:
        work.close()
        raise


def _copy_tokenizer(src: Path, dst: Path) -> None:
    if not src.is_dir():
        raise ConfigError(f"tokenizer directory {src} does not exist")
    for f in src.iterdir():
        if f.is_file() and f.name not in _MODEL_FILES:
            shutil.copy2(f, dst / f.name)


def _special_token_ids(tokenizer_dir: Path) -> dict[str, int]:
    """bos/eos/pad ids of a HF tokenizer directory, for config.json; {} when it has none."""
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    except Exception:  # optional metadata: a tokenizer transformers cannot read still gets copied
        return {}
    ids = {f"{n}_token_id": getattr(tok, f"{n}_token_id", None) for n in ("bos", "eos", "pad")}
    return {k: v for k, v in ids.items() if isinstance(v, int)}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _transformers_version() -> str:
    from importlib.metadata import version

    return version("transformers")
