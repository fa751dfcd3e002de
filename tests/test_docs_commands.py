"""Every `lossreweight ...` command shown in README.md and docs/*.md parses: its subcommand and
flags exist, and its key=value overrides name real config keys with valid values. Docs that
drift from the command line fail here instead of in a user's terminal. Nothing is run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from lossreweight.cli import build_parser
from lossreweight.config import load_config, preset_names

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A synopsis, not a command: placeholders (NAME, RUN_DIR, DIR...), optional parts in brackets.
PLACEHOLDER = re.compile(r"^\[|\.\.\.|^[A-Z][A-Z_]*$|\|")


def shell_lines(path: Path) -> list[str]:
    """The lines inside the file's fenced code blocks, continuation lines joined."""
    lines, inside, pending = [], False, ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("```"):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    return lines


def commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in DOCS:
        for line in shell_lines(path):
            line = re.split(r"\s#", line, maxsplit=1)[0].strip()
            for part in re.split(r"\s*(?:&&|&|;)\s*", line):
                if not part.startswith("lossreweight "):
                    continue
                argv = shlex.split(part.split(">")[0])[1:]
                if argv and argv[0].endswith(":"):  # a message it prints, not a command
                    continue
                if not any(PLACEHOLDER.search(a) for a in argv if "=" not in a):
                    found.append((f"{path.name}: {part}", argv))
    return found


COMMANDS = commands()


def test_the_docs_show_commands():
    assert len(COMMANDS) > 20 and any(name.startswith("README.md") for name, _ in COMMANDS)


@pytest.mark.parametrize("argv", [pytest.param(a, id=name[:90]) for name, a in COMMANDS])
def test_a_documented_command_parses(argv: list[str]) -> None:
    args, extra = build_parser().parse_known_args(argv)
    overrides = [*getattr(args, "overrides", []), *extra]
    assert not [e for e in extra if e.startswith("-")], f"unknown flags {extra}"
    if extra:
        assert args._overrides, f"{args.command} takes no key=value overrides, got {extra}"
    if args.command == "experiment":
        from lossreweight.experiments.studies import study_names

        assert args.name in study_names(), f"no study {args.name!r}"
    if overrides:
        preset = getattr(args, "config", None)
        load_config(
            preset if preset in preset_names() else "tiny", overrides
        )  # keys and values valid
