"""The studies behind `lossreweight experiment NAME [--quick] [--out DIR]`.

Every module here is one study: it defines `STUDY`, an instance of a `harness.Study`
subclass. The study's name is the module's name with '_' written '-' (weight_bound ->
weight-bound), its one-line description the first line of the module's docstring. Adding a
study is adding one file; modules whose name starts with '_' are not studies. Names and
descriptions are read without importing the modules, so listing them stays cheap.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from lossreweight.errors import ConfigError

_PACKAGE = __name__


@lru_cache(maxsize=1)
def _modules() -> dict[str, str]:
    """study name -> module file name (without .py), in alphabetical order."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return {m.replace("_", "-"): m for m in names}


def describe(name: str) -> str:
    """The first line of the study module's docstring."""
    path = Path(__file__).with_name(f"{_modules()[name]}.py")
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0].rstrip(".") if doc.strip() else ""


def study_names() -> list[str]:
    return list(_modules())


def _registry() -> dict[str, str]:
    return {name: describe(name) for name in _modules()}


def get_study(name: str) -> Any:
    """The `Study` object of a study by name."""
    if name not in _modules():
        raise ConfigError(f"unknown study {name!r}; studies: {', '.join(_modules())}")
    module = importlib.import_module(f"{_PACKAGE}.{_modules()[name]}")
    study = getattr(module, "STUDY", None)
    if study is None:
        raise ConfigError(f"study module {module.__name__} defines no STUDY")
    return study


def default_out(name: str, quick: bool) -> Path:
    from lossreweight.experiments.scales import study_dir

    return study_dir(name, None, quick)


def run_study(
    name: str,
    out_dir: Path | None = None,
    *,
    quick: bool = False,
    log: Callable[[str], None] | None = None,
    jobs: int = 1,
    train_missing: bool = True,
) -> dict[str, Any]:
    study = get_study(name)
    out = Path(out_dir) if out_dir is not None else default_out(name, quick)
    return study.run(out, quick=quick, log=log, jobs=jobs, train_missing=train_missing)


def __getattr__(attr: str) -> Any:
    if attr == "STUDIES":  # name -> one-line description
        return _registry()
    raise AttributeError(attr)
