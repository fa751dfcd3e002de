"""`lossreweight export-hf RUN_DIR OUT_DIR`: a run's newest checkpoint as a Hugging Face model."""

from __future__ import annotations

import argparse
from pathlib import Path

from lossreweight.errors import ConfigError

DTYPES = ("float32", "bfloat16")


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        type=Path,
        help="a run directory written by `lossreweight train`",
    )
    p.add_argument(
        "out_dir", metavar="OUT_DIR", type=Path, help="where to write the Hugging Face model"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace OUT_DIR if it exists and is not empty; export non-finite weights",
    )
    p.add_argument(
        "--dtype", choices=DTYPES, default="float32", help="weight dtype (default: float32)"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from lossreweight.model.hf_export import check_out_dir, export_hf
    from lossreweight.model.llama import LlamaModel
    from lossreweight.model.load import load_run_model
    from lossreweight.rundir import TOKENIZER_DIR, check_run_tokenizer

    run_dir, out_dir = args.run_dir, args.out_dir
    if run_dir.resolve() == out_dir.resolve() or run_dir.resolve().is_relative_to(
        out_dir.resolve()
    ):
        raise ConfigError(
            f"OUT_DIR {out_dir} would replace the run directory itself; choose another OUT_DIR"
        )
    check_out_dir(out_dir, args.force)  # before loading a possibly large model
    check_run_tokenizer(run_dir)  # the tokenizer exported is the one the run trained with
    model, ckpt = load_run_model(
        run_dir, allow_nonfinite=args.force, force_hint="; pass --force to export it anyway"
    )
    dtype = getattr(torch, args.dtype)
    model.to(dtype)  # cast in place: export_hf then needs no copy
    tokenizer = run_dir / TOKENIZER_DIR
    export_hf(
        model, out_dir, tokenizer if tokenizer.is_dir() else None, dtype=dtype, force=args.force
    )
    kind = "LlamaForCausalLM" if isinstance(model, LlamaModel) else type(model.hf).__name__
    print(
        f"exported {run_dir}/{ckpt.relative_to(run_dir)} to {out_dir} "
        f"({kind}, {model.num_parameters() / 1e6:.1f}M parameters, {args.dtype})"
    )
    return 0
