"""The studies behind `lossreweight experiment NAME [--quick] [--out DIR]`.

Every module (or folder, for a study with its own helpers) here is one study: it defines
`STUDY`, an instance of a `harness.Study` subclass. The study's name is the module's name with
'_' written '-' (weight_bound -> weight-bound), its one-line description the first line of the
module's docstring. Adding a study is adding one file or folder, removing it is deleting it;
names starting with '_' are not studies. Names and descriptions are read without importing the
modules, so listing them stays cheap.

A study of your own, outside this package: an installed package's entry point in the group
`lossreweight.studies`, `my-study = "my_package:STUDY"` (see examples/study_plugin). It cannot
take a built-in study's name.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from functools import lru_cache
from pathlib import Path
from typing import Any

from lossreweight import plugins
from lossreweight.errors import ConfigError

_PACKAGE = __name__
ENTRY_POINT_GROUP = "lossreweight.studies"


@lru_cache(maxsize=1)
def _modules() -> dict[str, str]:
    """study name -> module (or folder) name, in alphabetical order."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return {m.replace("_", "-"): m for m in names}


def _installed() -> dict[str, plugins.EntryPoint]:
    """Studies of installed packages (not cached: what is installed decides)."""
    return plugins.installed(ENTRY_POINT_GROUP, taken=_modules())


def describe(name: str) -> str:
    """The first line of the study module's docstring (an installed study: its package's
    summary)."""
    if name not in _modules():
        return plugins.describe(_installed()[name])
    base = Path(__file__).with_name(_modules()[name])
    path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0].rstrip(".") if doc.strip() else ""


def study_names() -> list[str]:
    return [*_modules(), *sorted(_installed())]


def _registry() -> dict[str, str]:
    return {name: describe(name) for name in study_names()}


def get_study(name: str) -> Any:
    """The `Study` object of a study by name."""
    from lossreweight.experiments.harness import Study

    if name in _modules():
        module = importlib.import_module(f"{_PACKAGE}.{_modules()[name]}")
        study, where = getattr(module, "STUDY", None), f"study module {module.__name__}"
    elif name in (installed := _installed()):
        ep = installed[name]
        study = plugins.load(ep, "study", error=ConfigError)
        where = f"entry point {ep.name} = {ep.value!r}"
        if isinstance(study, type) and issubclass(study, Study):
            study = study()
    else:
        raise ConfigError(f"unknown study {name!r}; studies: {', '.join(study_names())}")
    if not isinstance(study, Study):
        raise ConfigError(f"{where} defines no STUDY (an instance of harness.Study)")
    if study.name != name:  # the name it is found by is the name in its folder's marker
        study.name = name
    return study


def default_out(name: str, quick: bool) -> Path:
    from lossreweight.experiments.scales import study_dir

    return study_dir(name, None, quick)


def __getattr__(attr: str) -> Any:
    if attr == "STUDIES":  # name -> one-line description
        return _registry()
    raise AttributeError(attr)
