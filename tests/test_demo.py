"""`lossreweight demo --quick` end to end: report, plots, summary, and a fair comparison."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from cli_utils import PNG_MAGIC, shared_dir

from lossreweight.cli import main
from lossreweight.experiments.demo import QUICK_OVERRIDES, STRATEGIES

pytestmark = pytest.mark.xdist_group("demo")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out, lock = shared_dir(tmp_path_factory, "demo-quick")
    buf = io.StringIO()
    with lock, contextlib.redirect_stdout(buf):
        rc = main(["demo", "--quick", "--out", str(out)])
    assert rc == 0
    return out, json.loads((out / "summary.json").read_text()), buf.getvalue()


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def test_writes_report_plots_and_summary(demo: tuple[Path, dict[str, Any], str]) -> None:
    out, s, stdout = demo
    page = (out / "report.html").read_text()
    assert page.startswith("<!doctype html>")
    pngs = [f for f in s["files"].values() if f.endswith(".png")]
    assert len(pngs) >= 4
    for name in pngs:
        assert (out / name).read_bytes().startswith(PNG_MAGIC) and f'src="{name}"' in page
    assert f"report: {out / 'report.html'}" in stdout and "demo took" in stdout
    for strategy in STRATEGIES:
        assert strategy in stdout


def test_summary_schema(demo: tuple[Path, dict[str, Any], str]) -> None:
    _, s, _ = demo
    steps = int(next(o for o in QUICK_OVERRIDES if o.startswith("train.max_steps=")).split("=")[1])
    assert list(s["runs"]) == list(STRATEGIES) and s["seeds"] == [0]
    assert len(s["domains"]) == 6  # the embedded corpus
    for r in s["runs"].values():
        assert r["steps"] == steps and isinstance(r["tokens"], int) and r["tokens"] > 0
        assert _finite(r["val_loss"]) and _finite(r["val_loss_domain_avg"])
        assert set(r["val_loss_by_domain"]) == set(s["domains"])
        assert all(_finite(v) for v in r["val_loss_by_domain"].values())
        assert r["val_loss"] == r["per_seed"]["val_loss"][0]  # one seed: that run's values
    diff = s["runs"]["linupper"]["diff_vs_uniform"]["val_loss"]
    assert diff["mean"] == pytest.approx(s["runs"]["linupper"]["val_loss"] - s["runs"]["uniform"]["val_loss"])
    assert s["runs"]["linupper"]["weights"]["max_weight_x_m"] > 1.0


def test_both_strategies_saw_identical_batches(demo: tuple[Path, dict[str, Any], str]) -> None:
    _, s, _ = demo
    u, lin = s["runs"]["uniform"], s["runs"]["linupper"]
    assert u["tokens"] == lin["tokens"]
    assert s["same_batches"] is True and u["batch_checksums"] == lin["batch_checksums"]
    # Same init and same first batch: the step-1 mean loss is identical, bit for bit.
    assert _finite(u["first_train_loss"][0]) and u["first_train_loss"] == lin["first_train_loss"]
    # ... and the weights then change the training: the runs differ afterwards.
    assert u["val_loss"] != lin["val_loss"]
