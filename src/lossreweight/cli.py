"""The `lossreweight` command line.

Each subcommand lives in `lossreweight.commands.<name>` and exposes `add_parser(subparsers)`
and `run(args) -> int`. Modules are imported lazily so `lossreweight --help` stays fast and a
missing optional dependency of one command never breaks the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lossreweight import __version__
from lossreweight.errors import UserError
from lossreweight.extras import require_extra

# (subcommand, module under lossreweight.commands, one-line help, extras it needs). A missing
# extra is checked before the command runs: one line naming `pip install 'lossreweight[X]'`.
COMMANDS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("prepare", "prepare", "tokenize a corpus into token shards", ("train",)),
    ("train", "train", "pretrain a model with loss-based sample reweighting", ("train",)),
    (
        "eval",
        "evaluate",
        "evaluate a run per domain, on lm-eval tasks, or over all checkpoints",
        ("train",),
    ),
    (
        "compare",
        "compare",
        "train several strategies on the same batches and report",
        ("train", "report"),
    ),
    # config.json records the transformers version that will read it: hf is needed.
    ("export-hf", "export_hf", "export a run as a Hugging Face LlamaForCausalLM", ("train", "hf")),
    (
        "demo",
        "demo",
        "uniform vs linupper on the embedded corpus, with a report",
        ("train", "report", "corpus"),
    ),
    ("sample", "sample", "generate text from a run's checkpoint (no export needed)", ("train",)),
    ("experiment", "experiment", "run one of the paper's studies", ("train", "report")),
    ("report", "report", "combine study directories into one HTML page", ("report",)),
    ("config", "config", "print a resolved configuration, each key with its meaning", ("train",)),
]


class _Parser(argparse.ArgumentParser):
    """Bad flags: one line on stderr naming the problem and where to look, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lossreweight",
        description="Dynamic loss-based sample reweighting for LM pretraining (ICLR 2025).",
    )
    parser.add_argument("--version", action="version", version=f"lossreweight {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text, *extras in COMMANDS:
        try:
            module = importlib.import_module(f"lossreweight.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("lossreweight.commands"):
                continue  # command not built yet
            raise
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_parser(p)
        p.set_defaults(
            _run=module.run,
            _overrides=getattr(module, "ACCEPTS_OVERRIDES", False),
            _extras=tuple(extras[0]) if extras else ("train",),
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may follow options (`train tiny --out d a=1`), which argparse's
    # positional matching cannot express; collect them from the leftovers instead.
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            if getattr(args, "_overrides", False) and not any(e.startswith("-") for e in extra):
                args.overrides = [*getattr(args, "overrides", []), *extra]
            else:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help, --version, bad flags
        return int(exc.code or 0)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 0
    try:
        require_extra(*args._extras)
        return int(args._run(args) or 0)
    except UserError as exc:
        message = " ".join(str(exc).splitlines())  # always one line, whatever a path holds
        print(f"lossreweight {args.command}: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"lossreweight {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.filename is None:  # not about a file: a bug, keep the traceback
            raise
        # Disk full, read-only or missing paths: the environment, not a bug; one line.
        print(
            f"lossreweight {args.command}: error: {exc.strerror or exc}: {exc.filename}; "
            "free disk space or fix the path/permissions and re-run",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
