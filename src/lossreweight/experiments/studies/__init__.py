"""The paper's studies, by name: `lossreweight experiment NAME [--quick] [--out DIR]`.

Each is `run(out_dir, quick=..., log=...) -> summary` and writes summary.json, PNG plots and
index.html into its folder (default runs/<name>, runs/<name>-quick with --quick). Modules are
imported on use so listing the names stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lossreweight.errors import ConfigError

# name -> (module, function, one-line description)
STUDIES: dict[str, tuple[str, str, str]] = {
    "linreg": ("lossreweight.experiments.linreg", "run_linreg", "the toy least-squares study (paper Figure 7)"),
    "strategies": ("lossreweight.experiments.studies.strategies", "run_strategies",
                   "uniform, linupper, quadratic, extremes on the same batches, several seeds"),
    "temperature": ("lossreweight.experiments.studies.temperature", "run_temperature",
                    "linupper at r in {0.2 ... 1, 100} and temperature schedules"),
    "weight-bound": ("lossreweight.experiments.studies.weight_bound", "run_weight_bound",
                     "is max(w) <= 2/M? synthetic batches and training, with and without the cap"),
    "domain-mix": ("lossreweight.experiments.studies.domain_mix", "run_domain_mix",
                   "uniform vs a static domain mixture, each with and without linupper"),
}


def get_study(name: str) -> Callable[..., dict[str, Any]]:
    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r}; studies: {', '.join(STUDIES)}")
    module, func, _ = STUDIES[name]
    return getattr(importlib.import_module(module), func)


def default_out(name: str, quick: bool) -> Path:
    from lossreweight.experiments.studies.common import study_dir

    return study_dir(name, None, quick)


def run_study(name: str, out_dir: Path | None = None, *, quick: bool = False,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    fn = get_study(name)
    out = Path(out_dir) if out_dir is not None else default_out(name, quick)
    if name == "linreg":
        return fn(out, quick=quick)  # no training runs, nothing to log
    return fn(out, quick=quick, log=log)
