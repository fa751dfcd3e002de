"""code: the CPython standard library's own `.py` files, without its tests."""

from __future__ import annotations

import functools
import os
import platform
import sysconfig
from pathlib import Path

from lossreweight.data.documents import LazyDocument

DOMAIN = "code"
PACKAGE = None

# Test suites, and generated tables (codecs, the pydoc topics that are the `docs` domain).
_SKIP_DIRS = {
    "site-packages",
    "dist-packages",
    "__pycache__",
    "test",
    "tests",
    "idle_test",
    "pydoc_data",
    "encodings",
}


def version() -> str:
    return f"cpython-{platform.python_version()}"


def _stdlib() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def documents() -> list[LazyDocument]:
    root = _stdlib()
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in _SKIP_DIRS and not d.startswith(("test", "config-", "."))
        )
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames:
            if name.endswith(".py") and not name.startswith(("test_", "_test")):
                found.append((rel_dir / name).as_posix())
    found.sort()
    return [(rel, functools.partial(_read, root, rel)) for rel in found]


def _read(root: Path, rel: str) -> str:
    text = (root / rel).read_text(encoding="utf-8", errors="replace")
    return f"# {rel}\n{text}"
