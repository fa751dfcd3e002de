"""`lossreweight compare`: strategies x seeds on the same batches, cached runs, summary, report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from cli_utils import PNG_MAGIC, shared_dir
from cli_utils import run_cli as _cli
from train_utils import TINY_OVERRIDES, deterministic

from lossreweight.experiments.runs import run_status
from lossreweight.rundir import read_metrics
from lossreweight.train import load_config

PLOTS = (
    "loss_curves",
    "val_loss_by_domain",
    "weight_diagnostics",
    "domain_weight_share",
    "domain_share_ratio",
)
pytestmark = pytest.mark.xdist_group("compare")


def _compare(out: Path, *extra: str) -> tuple[int, str, str]:
    return _cli(
        "compare",
        "tiny",
        "--out",
        str(out),
        "--strategies",
        "uniform,linupper",
        "--seeds",
        "0,1",
        *TINY_OVERRIDES,
        *extra,
    )


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out, lock = shared_dir(tmp_path_factory, "compare-2-seeds")
    with lock:
        rc, stdout, err = _compare(out)
    assert rc == 0, err
    return out, json.loads((out / "summary.json").read_text()), stdout


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def test_summary_schema_two_seeds(compared: tuple[Path, dict[str, Any], str]) -> None:
    out, s, _ = compared
    assert list(s["runs"]) == ["uniform", "linupper"] and s["seeds"] == [0, 1]
    assert s["baseline"] == "uniform" and set(s["domains"]) >= {"code", "math"}
    for name, r in s["runs"].items():
        assert r["seeds"] == [0, 1] and r["steps"] == 6 and r["tokens"] == 6 * 4 * 32
        assert _finite(r["val_loss"]) and _finite(r["std"]["val_loss"])
        assert r["val_loss"] == pytest.approx(sum(r["per_seed"]["val_loss"]) / 2)
        assert set(r["val_loss_by_domain"]) == set(s["domains"])
        assert all(_finite(v) for v in r["val_loss_by_domain"].values())
        assert all(_finite(v) for v in r["std"]["val_loss_by_domain"].values())
        d = r["diff_vs_uniform"]
        assert len(d["val_loss"]["per_seed"]) == 2 and _finite(d["val_loss"]["mean"])
        assert set(d["val_loss_by_domain"]) == set(s["domains"])
        for seed_dir in r["run_dirs"]:
            assert (Path(seed_dir) / "final.json").is_file() and Path(
                seed_dir
            ).parent == out / "runs"
        if name == "uniform":
            assert d["val_loss"]["per_seed"] == [0.0, 0.0] and r["weights"][
                "max_weight_x_m"
            ] == pytest.approx(1.0)
        else:
            assert r["weights"]["max_weight_x_m"] > 1.0 and _finite(r["weights"]["ess_fraction"])
            for dom in s["domains"]:
                assert _finite(r["weights"]["domain_weight_share"][dom])
    paths = sorted(p.name for p in (out / "runs").iterdir())
    assert paths == ["linupper-seed0", "linupper-seed1", "uniform-seed0", "uniform-seed1"]


def test_strategies_saw_identical_batches(compared: tuple[Path, dict[str, Any], str]) -> None:
    _, s, _ = compared
    u, lin = s["runs"]["uniform"], s["runs"]["linupper"]
    assert s["same_batches"] is True
    assert u["batch_checksums"] == lin["batch_checksums"]
    assert u["batch_checksums"][0] != u["batch_checksums"][1]  # seeds change the order
    # Step 1: same init, same first batch, so the same mean loss before any update.
    assert u["first_train_loss"] == lin["first_train_loss"]
    assert all(_finite(v) for v in u["first_train_loss"])
    assert u["per_seed"]["tokens"] == lin["per_seed"]["tokens"]


def test_report_plots_and_table(compared: tuple[Path, dict[str, Any], str]) -> None:
    out, s, stdout = compared
    page = (out / "index.html").read_text()
    for name in PLOTS:
        png = out / s["files"][name]
        assert png.read_bytes().startswith(PNG_MAGIC)
        assert f'src="{png.name}"' in page
    assert "strategy" in stdout and "linupper" in stdout and "code" in stdout
    assert f"report: {out / 'index.html'}" in stdout


def test_second_invocation_reuses_finished_runs(
    compared: tuple[Path, dict[str, Any], str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    out, s, _ = compared
    factory = tmp_path_factory
    finals = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/final.json")}
    metrics = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/metrics.jsonl")}
    with shared_dir(factory, "compare-2-seeds")[1]:
        rc, stdout, _ = _compare(out, "log.progress=true")  # a logging-only change keeps the cache
    assert rc == 0
    assert stdout.count("cached") == 4 and "training" not in stdout
    assert {p: p.stat().st_mtime_ns for p in finals} == finals
    assert {p: p.stat().st_mtime_ns for p in metrics} == metrics
    again = json.loads((out / "summary.json").read_text())
    assert again["runs"]["linupper"]["per_seed"] == s["runs"]["linupper"]["per_seed"]
    assert again["runs"]["linupper"]["status"] == ["cached", "cached"]


def test_interrupted_run_resumes_and_changed_settings_retrain(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    args = ["compare", "tiny", "--out", str(out), "--strategies", "linupper", *TINY_OVERRIDES]
    assert _cli(*args)[0] == 0
    run = out / "runs" / "linupper-seed0"
    straight = deterministic(read_metrics(run))
    # As if killed after the step-3 checkpoint: no final.json, no step-6 checkpoint.
    (run / "final.json").unlink()
    for ckpt in (run / "checkpoints").iterdir():
        if ckpt.name.endswith("6"):
            import shutil

            shutil.rmtree(ckpt)
    cfg = load_config("tiny", [*TINY_OVERRIDES, "reweight.strategy=linupper", "train.seed=0"])
    assert run_status(run, cfg) == "partial"
    rc, stdout, _ = _cli(*args)
    assert rc == 0 and "resuming" in stdout
    assert deterministic(read_metrics(run)) == straight
    # final.json without the final evaluation (a trainer of old, resumed at its last step) or
    # damaged: the run is not done; resuming it evaluates its last checkpoint again.
    final = json.loads((run / "final.json").read_text())
    for damaged in ('{"steps": 6, "tokens": 768}', "{not json"):
        (run / "final.json").write_text(damaged)
        assert run_status(run, cfg) == "partial"
        rc, stdout, _ = _cli(*args)
        assert rc == 0 and "resuming" in stdout
        again = json.loads((run / "final.json").read_text())
        assert again["eval/loss"] == pytest.approx(final["eval/loss"], abs=1e-6)
    assert deterministic(read_metrics(run)) == straight
    # Another learning rate is another run: it goes beside the finished one, which is kept as it
    # was.
    kept = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    rc, stdout, _ = _cli(*args, "train.lr=1e-3")
    assert rc == 0 and "other settings (kept)" in stdout
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == kept
    (beside,) = (out / "runs" / "by-config").glob("*/linupper-seed0")
    assert json.loads((beside / "resolved_config.json").read_text())["train"][
        "lr"
    ] == pytest.approx(1e-3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"]["linupper"]["run_dirs"] == [str(beside)]
    # Back to the first settings: the kept run is found again, nothing trains.
    rc, stdout, _ = _cli(*args)
    assert rc == 0 and "cached" in stdout and "training" not in stdout


def test_out_folder_of_another_kind_is_refused(tmp_path: Path) -> None:
    """compare --out never writes into a stranger's non-empty folder, a training run, or a
    folder another command wrote; nothing in it changes."""
    stranger = tmp_path / "mine"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    (run / "resolved_config.json").write_text("{}")
    study = tmp_path / "study"
    study.mkdir()
    (study / ".lossreweight-output.json").write_text('{"kind": "experiment", "name": "strategies"}')
    for folder, message in (
        (stranger, "not empty and was not written by lossreweight"),
        (run, "is a training run"),
        (study, "experiment strategies"),
    ):
        before = sorted(p.name for p in folder.iterdir())
        rc, _, err = _cli(
            "compare", "tiny", "--out", str(folder), "--strategies", "uniform", *TINY_OVERRIDES
        )
        assert rc == 2 and message in err and err.count("\n") == 1, err
        assert sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--strategies", "uniform,bogus"], "unknown strategy 'bogus'"),
        (["--strategies", "upper"], "ambiguous"),
        (["--strategies", "uniform,uniform"], "more than once"),
        (["--strategies", ","], "empty"),
        (["--strategies", "uniform", "--seeds", "a"], "--seeds"),
        (["--strategies", "uniform", "reweight.strategy=linupper"], "--strategies"),
        (["--strategies", "uniform", "train.lrr=1"], "did you mean train.lr"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, flags: list[str], message: str) -> None:
    rc, stdout, err = _cli("compare", "tiny", "--out", str(tmp_path / "x"), *flags)
    assert rc == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "x" / "runs").exists()


def _png_width(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")  # the IHDR chunk's width


def test_figures_fit_the_page_and_loss_bars_are_framed(
    compared: tuple[Path, dict[str, Any], str],
) -> None:
    out, s, _ = compared
    for name in PLOTS:
        assert _png_width(out / s["files"][name]) <= 1200, name  # 10 in at 120 dpi
    from lossreweight.experiments.plots import new_figure, plot_grouped_bars

    fig, (ax,) = new_figure(1)
    values = {"code": {"uniform": 3.52, "linupper": 3.50}, "wiki": {"uniform": 3.9}}
    plot_grouped_bars(ax, values, errors={"code": {"uniform": 0.01}}, from_zero=False)
    lo, hi = ax.get_ylim()
    assert 3.3 < lo < 3.49 and 3.9 < hi < 4.1  # the losses' range, not 0 to 4


def test_protocol_lists_each_override_once(compared: tuple[Path, dict[str, Any], str]) -> None:
    from lossreweight.experiments.page import effective_overrides

    assert effective_overrides(["a=1", "b=2", "a=3"]) == ["a=3", "b=2"]
    out, s, _ = compared
    (protocol,) = [x for x in s["report"]["sections"] if x["heading"] == "Protocol"]
    text = protocol["text"][0]
    for item in TINY_OVERRIDES:
        assert text.count(item.partition("=")[0] + "=") == 1, item


def test_out_folder_keeps_user_files_and_never_writes_through_links(tmp_path: Path) -> None:
    """A compare folder re-run: the user's notes beside the outputs stay, a link at an output's
    name is replaced (its target untouched), what an earlier run wrote and this one does not (an
    old report.html) is removed, and a .png it did not write is refused in one line."""
    out = tmp_path / "cmp"
    args = ["compare", "tiny", "--out", str(out), "--strategies", "uniform", *TINY_OVERRIDES]
    assert _cli(*args)[0] == 0
    marker = json.loads((out / ".lossreweight-output.json").read_text())
    assert {"index.html", "summary.json", "loss_curves.png"} <= set(marker["files"])
    (out / "notes.txt").write_text("mine")
    precious = tmp_path / "precious.png"
    precious.write_bytes(b"not a plot")
    (out / "loss_curves.png").unlink()
    (out / "loss_curves.png").symlink_to(precious)
    # As a folder from before the marker listed files: summary.json names what it wrote, and
    # compare's page was report.html.
    (out / ".lossreweight-output.json").write_text('{"kind": "compare", "name": "compare"}')
    s = json.loads((out / "summary.json").read_text())
    s["files"]["html"] = "report.html"
    (out / "summary.json").write_text(json.dumps(s))
    (out / "index.html").rename(out / "report.html")
    rc, _, err = _cli(*args)
    assert rc == 0, err
    assert precious.read_bytes() == b"not a plot" and not (out / "loss_curves.png").is_symlink()
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "report.html").exists() and (out / "index.html").is_file()
    (out / "mine.png").write_bytes(PNG_MAGIC)
    before = (out / "summary.json").read_bytes()
    rc, _, err = _cli(*args)
    assert rc == 2 and "holds mine.png" in err and "move it away" in err
    assert err.count("\n") == 1 and (out / "summary.json").read_bytes() == before
