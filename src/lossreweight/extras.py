"""Optional dependency groups (`pip install 'lossreweight[NAME]'`) and the check that a
command's group is installed.

`pip install lossreweight` is the library only (torch, numpy). Each command names the extras
it needs (lossreweight.cli.COMMANDS); a missing one is a one-line exit-2 error naming the
`pip install` that fixes it, never an ImportError traceback halfway through a run.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re

from lossreweight.errors import UserError

DISTRIBUTION = "lossreweight"

# The modules that must import for an extra to count as installed, by import name (pyyaml is
# `yaml`). tests/test_config_extras.py checks these against pyproject.toml's extras.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "train": ("yaml", "pydantic", "safetensors", "tokenizers", "tqdm", "tensorboard"),
    "data": ("zstandard", "pyarrow", "datasets", "tiktoken"),
    "report": ("matplotlib",),
    "hf": ("transformers", "accelerate"),
    "lightning": ("lightning",),
    "wandb": ("wandb",),
    "eval": ("lm_eval",),
}
# Extras made of data-only packages (the embedded corpus's sources): checked by distribution,
# the list read from the installed package's metadata, so it is written once, in pyproject.
DISTRIBUTION_EXTRAS = ("corpus",)


class MissingExtra(UserError):
    """A command needs an optional dependency group that is not installed."""


def missing_modules(extra: str) -> list[str]:
    """The modules of `extra` that cannot be imported (an unknown extra raises KeyError)."""
    return [m for m in EXTRA_MODULES[extra] if not _importable(m)]


def missing_distributions(extra: str) -> list[str]:
    """The distributions of `extra` (from the installed metadata) that are not installed."""
    return [d for d in extra_distributions(extra) if not _installed(d)]


def extra_distributions(extra: str) -> list[str]:
    """Distribution names in `extra`, from lossreweight's installed metadata ([] if unknown)."""
    try:
        requires = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return []  # running from a source tree without an install: nothing to check against
    names = []
    for req in requires:
        spec, _, marker = req.partition(";")
        if re.search(r"""extra\s*==\s*["']""" + re.escape(extra) + """["']""", marker):
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
            if match:
                names.append(match.group(1))
    return names


def require_extra(*extras: str) -> None:
    """Raise MissingExtra (exit 2, one line) unless every extra named is installed.

    All the missing extras are named at once, so one `pip install` fixes the command.
    """
    missing: dict[str, list[str]] = {}
    for extra in extras:
        if extra in DISTRIBUTION_EXTRAS:
            absent = missing_distributions(extra)
        else:
            absent = missing_modules(extra)
        if absent:
            missing[extra] = absent
    if not missing:
        return
    what = "; ".join(f"{extra}: {', '.join(names)}" for extra, names in missing.items())
    noun = "extra" if len(missing) == 1 else "extras"
    raise MissingExtra(
        f"this needs the {', '.join(repr(e) for e in missing)} {noun} (not installed: {what}); "
        f"install with: pip install 'lossreweight[{','.join(missing)}]'"
    )


def _importable(module: str) -> bool:
    try:
        # None for a missing module, and for one blocked with sys.modules[name] = None.
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or a module without a spec
        return False


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True
