"""`lossreweight train CONFIG --out DIR [--max-steps N] [--checkpoint-every K] [key=value ...]`"""

from __future__ import annotations

import argparse
import os
import sys

from lossreweight.errors import ConfigError
from lossreweight.metric_names import LOSS, PPL

ACCEPTS_OVERRIDES = True
# A run stopped by SIGTERM / Ctrl-C after saving a checkpoint exits with this status (BSD
# sysexits' EX_TEMPFAIL, "try again later"): a scheduler tells it from success (0, the run is
# finished) and from failure (1, 2), and re-running the same command resumes.
STOPPED_EXIT = 75


def add_parser(p: argparse.ArgumentParser) -> None:
    try:
        from lossreweight.config.yaml_io import preset_names

        presets = ", ".join(preset_names())
    except ImportError:  # the pipeline's extra is missing: --help works, `train` says what to do
        presets = "listed once the train extra is installed"
    p.add_argument("config", help=f"a YAML config file or a preset name ({presets})")
    p.add_argument("--out", required=True, help="run directory; re-running on it resumes")
    p.add_argument(
        "--max-steps",
        type=int,
        help="shorthand for train.max_steps=N; raise it on a finished run to continue it",
    )
    p.add_argument("--checkpoint-every", type=int, help="shorthand for checkpoint.every=K")
    p.add_argument(
        "--data-dir", help="where the token shards go (default: a cache keyed by the data config)"
    )
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="override any config field by dotted path"
    )


def overrides_from_args(args: argparse.Namespace) -> list[str]:
    overrides = list(args.overrides)
    if getattr(args, "max_steps", None) is not None:
        if args.max_steps < 1:
            raise ConfigError(f"--max-steps must be >= 1, got {args.max_steps}")
        overrides.append(f"train.max_steps={args.max_steps}")
    if getattr(args, "checkpoint_every", None) is not None:
        if args.checkpoint_every < 0:
            raise ConfigError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
        overrides.append(f"checkpoint.every={args.checkpoint_every}")
    return overrides


def run(args: argparse.Namespace) -> int:
    from lossreweight.train import load_config, train
    from lossreweight.train.console import lines_on_stdout
    from lossreweight.train.runtime import teardown_runtime

    cfg = load_config(args.config, overrides_from_args(args))
    try:
        with lines_on_stdout():  # the console's lines (the library only logs)
            result = train(cfg, args.out, data_dir=args.data_dir)
        is_main = int(os.environ.get("RANK", "0")) == 0
    finally:
        teardown_runtime()
    if result.interrupted:  # every rank: torchrun reports the first non-zero status
        if is_main:
            print(
                f"stopped at step {result.steps}; checkpoint saved in {args.out}. "
                f"Re-run the same command to resume (exit status {STOPPED_EXIT}: stopped, "
                "not finished).",
                file=sys.stderr,
            )
        return STOPPED_EXIT
    if not is_main:
        return 0
    ev = result.final_eval
    if ev.get(LOSS) is not None:
        print(
            f"done: {result.steps} steps, {result.tokens:,} tokens, "
            f"val loss {ev[LOSS]:.4f} (ppl {ev[PPL]:.2f}); run in {args.out}"
        )
    return 0
