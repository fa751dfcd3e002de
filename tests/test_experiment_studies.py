"""The studies' quick paths (`lossreweight experiment NAME --quick`) and `lossreweight report`."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from cli_utils import run_cli as _cli
from study_runs import Run, quick_run

from lossreweight.experiments.studies import STUDIES

# One worker runs the module (each quick study runs once per session: study_runs).
pytestmark = pytest.mark.xdist_group("studies")


@pytest.fixture(scope="module")
def strategies(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return quick_run(tmp_path_factory, "strategies")


@pytest.fixture(scope="module")
def temperature(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return quick_run(tmp_path_factory, "temperature")


@pytest.fixture(scope="module")
def weight_bound(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return quick_run(tmp_path_factory, "weight-bound")  # its uniform and linupper are copied


@pytest.fixture(scope="module")
def domain_mix(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return quick_run(tmp_path_factory, "domain-mix")


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_arms(s: dict[str, Any], arms: list[str], *, same_batches: bool = True) -> None:
    """The arms trained (test_studies_quick.py holds every study to the common rules)."""
    assert list(s["runs"]) == arms
    assert s["same_batches"] is True or not same_batches
    for arm, r in s["runs"].items():
        assert r["weights"]["max_weight_x_m"] >= 1.0 - 1e-5, arm


def test_strategies_quick(strategies: Run) -> None:
    _, s, _ = strategies
    arms = ["uniform", "linupper", "quadratic", "extremes"]
    _check_arms(s, arms)
    assert s["seeds"] == [0, 1] and s["baseline"] == "uniform"
    runs = s["runs"]
    for seed_index in range(2):  # every strategy saw the same batches from the same init
        assert len({runs[a]["batch_checksums"][seed_index] for a in arms}) == 1
        assert len({runs[a]["first_train_loss"][seed_index] for a in arms}) == 1
    for a in arms:
        d = runs[a]["diff_vs_uniform"]
        assert len(d["val_loss"]["per_seed"]) == 2 and _finite(d["val_loss"]["mean"])
        assert d["val_loss"]["per_seed"] == pytest.approx(
            [
                x - y
                for x, y in zip(
                    runs[a]["per_seed"]["val_loss"],
                    runs["uniform"]["per_seed"]["val_loss"],
                    strict=True,
                )
            ]
        )
        st = d["steps_to_baseline_final"]
        assert len(st["per_seed"]) == 2 and 0 <= st["reached"] <= 2
        assert all(v is None or 0 < v <= s["steps"] for v in st["per_seed"])
    assert runs["uniform"]["diff_vs_uniform"]["steps_to_baseline_final"]["reached"] == 2
    assert runs["uniform"]["diff_vs_uniform"]["val_loss"]["mean"] == 0.0
    assert runs["uniform"]["weights"]["max_weight_x_m"] == pytest.approx(1.0)


def test_temperature_quick(temperature: Run) -> None:
    _, s, _ = temperature
    full = [
        "uniform",
        "r=0.4",
        "r=1",
        "r=100",
        "anneal-100-to-1",
        "anneal-50-to-0.5",
        "anneal-200-to-2",
    ]
    half = [
        "uniform@half",
        "r=0.4@half",
        "anneal-100-to-1@half",
        "anneal-50-to-0.5@half",
        "anneal-200-to-2@half",
    ]
    _check_arms(s, [*full, *half], same_batches=False)
    runs = s["runs"]
    # Weight concentration falls as r grows; r = 100 is uniform to within 1%.
    conc = [runs[a]["weights"]["max_weight_x_m"] for a in ("r=0.4", "r=1", "r=100")]
    assert conc == sorted(conc, reverse=True) and conc[-1] < 1.01
    # Batches are shared within a budget, and the half budget is half as long.
    assert s["same_batches_per_seed"] and all(s["same_batches_per_seed"].values())
    steps = {k: v["steps"] for k, v in s["budgets"].items()}
    assert steps["@half"] == pytest.approx(steps["@full"] / 2, abs=1)
    assert (
        runs["r=0.4@half"]["paired_with"] == "uniform@half" and "paired_with" not in runs["r=0.4"]
    )
    assert runs["r=0.4@half"]["diff_vs_uniform"]["val_loss"]["per_seed"] == pytest.approx(
        [
            a - b
            for a, b in zip(
                runs["r=0.4@half"]["per_seed"]["val_loss"],
                runs["uniform@half"]["per_seed"]["val_loss"],
                strict=True,
            )
        ]
    )
    # Annealing: r is 100 (uniform weights before it) through the burn-in, then falls to 1.
    temps = [
        r["reweight/temperature"] for r in _metrics(Path(runs["anneal-100-to-1"]["run_dirs"][0]))
    ]
    burn = round(0.05 * s["budgets"]["@full"]["steps"])
    assert temps[burn] == pytest.approx(100.0, rel=0.1) and temps[-1] == pytest.approx(1.0, rel=0.1)
    assert temps[burn:] == sorted(temps[burn:], reverse=True)


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    from lossreweight.rundir import read_metrics

    return read_metrics(run_dir)


def test_weight_bound_quick(weight_bound: Run) -> None:
    out, s, _ = weight_bound
    _check_arms(s, ["uniform", "linupper", "linupper-cap2", "linupper-r0.2", "linupper-r0.2-cap2"])
    # uniform and linupper (seed 0) were copied from the strategies study, not retrained:
    # the same records, and no checkpoints (a copy leaves them behind).
    for arm in ("uniform", "linupper"):
        copy, source = (
            out / "runs" / f"{arm}-seed0",
            out.parent / "strategies" / "runs" / f"{arm}-seed0",
        )
        assert _metrics(copy) == _metrics(source) and not (copy / "checkpoints").exists()
    syn = s["synthetic"]
    assert syn["explained_by_top_half"] is True and syn["cap_holds"] is True
    res = syn["results"]
    outlier = res["right-skewed (1 high outlier)"]["0.4"]
    assert max(row["max_weight_x_m_max"] for row in outlier.values()) > 2.0  # the bound fails
    assert all(row["capped_max_weight_x_m_max"] <= 2.0 + 1e-4 for row in outlier.values())
    low = res["left-skewed (1 low outlier)"]
    assert all(
        row["max_weight_x_m_max"] <= 2.0 + 1e-4 for rows in low.values() for row in rows.values()
    )
    tb = s["training_bound"]
    for arm in ("linupper-cap2", "linupper-r0.2-cap2"):
        assert (
            tb[arm]["max_weight_x_m_max"] <= 2.0 + 1e-3 and tb[arm]["frac_steps_above_bound"] == 0.0
        )
    assert (
        tb["linupper-r0.2"]["max_weight_x_m_max"] >= tb["linupper-r0.2-cap2"]["max_weight_x_m_max"]
    )
    assert set(s["cap_effect"]) == {
        "linupper-cap2-vs-linupper",
        "linupper-r0.2-cap2-vs-linupper-r0.2",
    }


def test_domain_mix_quick(domain_mix: Run) -> None:
    _, s, _ = domain_mix
    arms = ["uniform-mix", "uniform-mix+linupper", "static-mix", "static-mix+linupper"]
    _check_arms(s, arms)
    runs = s["runs"]
    checks = {a: runs[a]["batch_checksums"][0] for a in arms}
    assert checks["uniform-mix"] == checks["uniform-mix+linupper"]
    assert checks["static-mix"] == checks["static-mix+linupper"]
    assert checks["uniform-mix"] != checks["static-mix"]  # another mixture, other batches
    share = {a: runs[a]["weights"]["domain_sample_share"] for a in arms}
    assert share["static-mix"]["math"] < share["uniform-mix"]["math"]  # math is down-weighted
    for a in ("uniform-mix", "static-mix"):  # uniform weights: weight share = sample share
        for d, v in runs[a]["weights"]["domain_weight_share"].items():
            assert v == pytest.approx(share[a][d], abs=1e-5)
    assert len(s["contrasts"]) == 4
    for c in s["contrasts"].values():
        assert set(c["val_loss_by_domain"]) == set(s["domains"]) and _finite(c["val_loss"]["mean"])


def test_report_combines_study_folders(strategies: Run, domain_mix: Run, tmp_path: Path) -> None:
    a, b = strategies[0], domain_mix[0]
    page_path = tmp_path / "out" / "all.html"
    # `report runs/*` also matches training runs and files: each is skipped with a note.
    run, loose = a / "runs" / "uniform-seed0", tmp_path / "notes.txt"
    loose.write_text("mine")
    rc, stdout, err = _cli("report", str(a), str(run), str(loose), str(b), "--out", str(page_path))
    assert rc == 0, err
    assert f"skipped {run}: not a study folder" in stdout and f"skipped {loose}" in stdout
    page = page_path.read_text()
    assert "strategies: " in page and "domain-mix: " in page
    srcs = re.findall(r'src="([^"]+)"', page)
    assert len(srcs) >= 10
    for src in srcs:  # every image resolves from the page's folder
        assert (page_path.parent / src).is_file(), src
    assert str(page_path) in stdout


def test_experiment_linreg_is_wired_and_report_takes_it(
    domain_mix: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`experiment linreg` calls run_linreg (stubbed here: tests/test_experiment_linreg.py runs
    it); its summary has no report block, so `report` falls back to conclusions and PNGs."""
    import shutil

    from lossreweight.experiments.studies import linreg

    calls = []

    def fake(
        out: Path, *, quick: bool = False, seeds: Any = None, config: Any = None
    ) -> dict[str, Any]:
        calls.append((Path(out), quick))
        out.mkdir(parents=True)
        shutil.copy(domain_mix[0] / "loss_curves.png", out / "test_loss.png")
        summary = {
            "study": "linreg",
            "conclusions": ["linupper is fastest"],
            "files": {"test_loss": "test_loss.png", "html": "index.html"},
        }
        (out / "summary.json").write_text(json.dumps(summary))
        return summary

    monkeypatch.setattr(linreg, "run_linreg", fake)
    lin = tmp_path / "linreg"
    rc, stdout, err = _cli("experiment", "linreg", "--quick", "--out", str(lin))
    assert rc == 0, err
    assert calls == [(lin, True)] and "- linupper is fastest" in stdout
    page_path = tmp_path / "one.html"
    assert _cli("report", str(lin), str(domain_mix[0]), "--out", str(page_path), "--embed")[0] == 0
    page = page_path.read_text()
    assert "linreg" in page and "linupper is fastest" in page and "domain-mix: " in page
    assert 'alt="test_loss.png"' in page  # a summary without stored sections: its plots
    assert 'src="data:image/png' in page and not re.search(r'src="(?!data:)', page)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["experiment", "nope"], "unknown study 'nope'"),
        (["report", "/nonexistent/folder"], "no summary.json"),
    ],
)
def test_bad_input_exits_2(args: list[str], message: str) -> None:
    rc, _, err = _cli(*args)
    assert rc == 2 and message in err and err.count("\n") == 1


def test_every_study_is_registered() -> None:
    assert set(STUDIES) >= {
        "linreg",
        "strategies",
        "temperature",
        "weight-bound",
        "domain-mix",
        "replicate",
        "noise",
        "scale",
    }
    assert all(desc and "\n" not in desc for desc in STUDIES.values())


def test_help_lists_every_study(capsys: pytest.CaptureFixture[str]) -> None:
    from lossreweight.cli import main

    try:
        rc = main(["experiment", "--help"])
    except SystemExit as exc:  # argparse's help exit, if main lets it through
        rc = exc.code
    assert rc in (0, None)
    text = " ".join(capsys.readouterr().out.split())
    assert all(f"{name}:" in text for name in STUDIES) and "5% burn-in" in text
