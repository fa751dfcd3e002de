"""`lossreweight demo --quick` end to end: report, plots, summary, and a fair comparison."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from cli_utils import run_cli
from study_runs import Run, lock, quick_run

from lossreweight.experiments.compare import DEMO_QUICK_SEEDS, DEMO_STRATEGIES, demo_overrides

pytestmark = pytest.mark.xdist_group("demo")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return quick_run(tmp_path_factory, "demo")


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def test_prints_its_time_and_strategies(demo: Run) -> None:
    _, _, stdout = demo  # the page and plots: test_studies_quick.py, as for every study
    assert "demo took" in stdout
    for strategy in DEMO_STRATEGIES:
        assert strategy in stdout


def test_summary_schema(demo: Run) -> None:
    _, s, _ = demo
    steps = int(
        next(o for o in demo_overrides(True) if o.startswith("train.max_steps=")).split("=")[1]
    )
    assert list(s["runs"]) == list(DEMO_STRATEGIES) and s["seeds"] == list(DEMO_QUICK_SEEDS)
    assert "math" not in s["domains"] and len(s["domains"]) == 5  # the natural-text domains
    for r in s["runs"].values():
        assert r["steps"] == steps and isinstance(r["tokens"], int) and r["tokens"] > 0
        assert _finite(r["val_loss"]) and _finite(r["val_loss_domain_avg"])
        assert set(r["val_loss_by_domain"]) == set(s["domains"])
        assert all(_finite(v) for v in r["val_loss_by_domain"].values())
        assert r["val_loss"] == pytest.approx(sum(r["per_seed"]["val_loss"]) / len(s["seeds"]))
    diff = s["runs"]["linupper"]["diff_vs_uniform"]["val_loss"]
    assert diff["mean"] == pytest.approx(
        s["runs"]["linupper"]["val_loss"] - s["runs"]["uniform"]["val_loss"]
    )
    assert diff["ci95"][0] < diff["mean"] < diff["ci95"][1]
    assert s["runs"]["linupper"]["weights"]["max_weight_x_m"] > 1.0


def test_paper_regime_and_verdict_first(demo: Run) -> None:
    _, s, stdout = demo
    (row,) = [r for r in s["setup"] if "linupper" in r["arms"]]
    assert row["burn_in_fraction"] == pytest.approx(0.05) and row[
        "lr_warmup_fraction"
    ] == pytest.approx(0.025)
    assert row["tokens_per_param"] == pytest.approx(2.6, rel=0.05)
    # Uniform weights during the burn-in, reweighting after it.
    metrics = [
        json.loads(line)
        for line in (Path(s["runs"]["linupper"]["run_dirs"][0]) / "metrics.jsonl")
        .read_text()
        .splitlines()
    ]
    burn = round(0.05 * row["steps"])
    assert all(m["reweight/max_weight_x_m"] == pytest.approx(1.0) for m in metrics[: burn - 1])
    assert max(m["reweight/max_weight_x_m"] for m in metrics[burn + 1 :]) > 1.01
    assert stdout.startswith("verdict: ") or "\nverdict: " in stdout
    assert (
        "linupper" in s["verdict"]
        and "95% interval" in s["verdict"]
        and "tokens/param" in s["verdict"]
    )


def test_out_onto_another_study_is_refused(
    demo: Run, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """demo --out onto a folder another command wrote (here: compare) refuses and changes
    nothing."""
    other = tmp_path / "cmp"
    other.mkdir()
    (other / ".lossreweight-output.json").write_text('{"kind": "compare", "name": "compare"}')
    (other / "summary.json").write_text('{"command": "compare"}')
    rc, _, err = run_cli("demo", "--quick", "--out", str(other))
    assert rc == 2 and "holds the output of `lossreweight compare`" in err and err.count("\n") == 1
    assert sorted(p.name for p in other.iterdir()) == [".lossreweight-output.json", "summary.json"]
    # The demo's own folder is accepted again (its runs are cached).
    out, _, _ = demo
    with lock(tmp_path_factory, "demo"):
        rc, _, err = run_cli("demo", "--quick", "--out", str(out))
    assert rc == 0, err


def test_both_strategies_saw_identical_batches(demo: Run) -> None:
    _, s, _ = demo
    u, lin = s["runs"]["uniform"], s["runs"]["linupper"]
    assert u["tokens"] == lin["tokens"]
    assert s["same_batches"] is True and u["batch_checksums"] == lin["batch_checksums"]
    # Same init and same first batch: the step-1 mean loss is identical, bit for bit.
    assert _finite(u["first_train_loss"][0]) and u["first_train_loss"] == lin["first_train_loss"]
    # ... and the weights then change the training: the runs differ afterwards.
    assert u["val_loss"] != lin["val_loss"]
