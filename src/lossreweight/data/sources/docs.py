"""docs: the Python language reference topics that ship in the stdlib (`pydoc_data`)."""

from __future__ import annotations

import platform

from lossreweight.data.documents import LazyDocument

DOMAIN = "docs"
PACKAGE = None


def version() -> str:
    return f"cpython-{platform.python_version()}"


def documents() -> list[LazyDocument]:
    from pydoc_data.topics import topics

    return [(name, (lambda t=topics[name]: t.strip() + "\n")) for name in sorted(topics)]
