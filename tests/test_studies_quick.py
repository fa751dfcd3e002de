"""Every study's `--quick` plan, run the same way and held to the same rules: the verdict and
the setup open index.html, every plot is a PNG the page shows, summary.json is strict JSON
with the one schema, and the folder's marker lists what the study wrote. Each study's own
numbers are tested in its own module, on the same cached run (study_runs.quick_run)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from cli_utils import PNG_MAGIC
from study_runs import quick_run

from lossreweight.experiments.studies import study_names

# Each study on the xdist worker of the module that tests its own numbers (same cached run, no
# worker waiting on another's lock); a study without such a module gets a group of its own.
GROUP = {
    "strategies": "studies",
    "temperature": "studies",
    "weight-bound": "studies",
    "domain-mix": "studies",
    "replicate": "paper-studies",
    "noise": "paper-studies",
    "scale": "paper-studies",
}
STUDIES = [
    pytest.param(name, marks=pytest.mark.xdist_group(GROUP.get(name, name)))
    for name in [*study_names(), "demo"]
]


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@pytest.mark.parametrize("name", STUDIES)
def test_every_study_quick(tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    out, s, stdout = quick_run(tmp_path_factory, name)
    assert s["study"] == name and s["quick"] is True
    assert s["verdict"].endswith(".") and f"verdict: {s['verdict']}" in stdout
    assert f"report: {out / 'index.html'}" in stdout
    page = (out / "index.html").read_text()
    headings = [h.split("</h2>")[0] for h in page.split("<h2>")[1:]]
    assert headings[:2] == ["Verdict", "Setup"], headings
    pngs = [f for f in s["files"].values() if f.endswith(".png")]
    assert pngs
    for f in pngs:
        assert (out / f).read_bytes().startswith(PNG_MAGIC) and f'src="{f}"' in page, f
    marker = json.loads((out / ".lossreweight-output.json").read_text())
    assert {*pngs, "index.html", "summary.json"} <= set(marker["files"])
    json.dumps(s, allow_nan=False)  # strict JSON throughout
    if name == "linreg":  # a toy problem, not a language model: no arms trained by the harness
        return
    assert s["complete"] is True and s["conclusions"] and s["report"]["sections"]
    assert s["command"] == ("demo" if name == "demo" else "experiment")
    for arm, r in s["runs"].items():
        assert len(r["per_seed"]["val_loss"]) == len(s["seeds"]), arm
        assert _finite(r["val_loss"]) and _finite(r["val_loss_domain_avg"]), arm
        # A domain only some arms train on (noise's corrupted one) is missing (None) elsewhere.
        by_domain = [v for v in r["val_loss_by_domain"].values() if v is not None]
        assert by_domain and all(_finite(v) for v in by_domain), arm
        assert _finite(r["weights"]["max_weight_x_m"]), arm
    for row in s["setup"]:
        assert row["params"] > 0 and row["tokens"] > 0 and row["tokens_per_param"] > 0
