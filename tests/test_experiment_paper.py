"""The studies in the paper's regime (`replicate`, `noise`, `scale`, --quick forms) and the
`report` page's refusal to overwrite files it did not write."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_utils import run_cli as _cli
from study_runs import Run, lock, quick_run

from lossreweight.experiments.scales import NATURAL_DOMAINS, TOKENS_PER_PARAM

pytestmark = pytest.mark.xdist_group("paper-studies")


@pytest.fixture(scope="module")
def replicate(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return quick_run(tmp_path_factory, "replicate")


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return quick_run(tmp_path_factory, "noise")


@pytest.fixture(scope="module")
def scale(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return quick_run(tmp_path_factory, "scale")


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _headings(page: str) -> list[str]:
    return [h.split("</h2>")[0] for h in page.split("<h2>")[1:]]


def test_replicate_summary_has_the_protocol_and_paired_intervals(replicate: Run) -> None:
    out, s, stdout = replicate
    p = s["protocol"]
    assert p["tokens_per_param"] == pytest.approx(TOKENS_PER_PARAM, rel=0.05)
    assert p["burn_in_fraction"] == 0.05 and p["lr_warmup_fraction"] == 0.025
    assert (
        p["temperature"] == [0.4, 1.0]
        and len(p["seeds"]) >= 3
        and p["params"] > 0
        and p["steps"] > 0
    )
    assert set(s["runs"]) == {
        "uniform",
        *(f"{a}-r{r}" for a in ("linupper", "quadratic", "extremes") for r in ("0.4", "1")),
    }
    assert set(s["domains"]) == set(NATURAL_DOMAINS)  # the synthetic math domain is not trained on
    uni = s["runs"]["uniform"]
    for name, a in s["runs"].items():
        assert _finite(a["val_loss"]) and _finite(a["worst_domain_loss"])
        assert set(a["val_loss_by_domain"]) == set(NATURAL_DOMAINS)
        for k, by in enumerate(zip(*a["per_seed"]["val_loss_by_domain"].values(), strict=True)):
            assert a["per_seed"]["worst_domain_loss"][k] == pytest.approx(max(by))
        if name == "uniform":
            continue
        d = a["diff_vs_uniform"]
        per = [
            x - y
            for x, y in zip(a["per_seed"]["val_loss"], uni["per_seed"]["val_loss"], strict=True)
        ]
        v = d["val_loss"]
        assert v["per_seed"] == pytest.approx(per) and v["mean"] == pytest.approx(
            sum(per) / len(per)
        )
        lo, hi = v["ci95"]
        assert lo < v["mean"] < hi
        for key in ("val_loss_domain_avg", "worst_domain_loss"):
            assert len(d[key]["ci95"]) == 2
        st = d["steps_to_baseline_final"]
        assert st["of"] == len(p["seeds"]) and all(
            x is None or 0 < x <= p["steps"] for x in st["per_seed"]
        )
    assert s["same_batches"] is True and s["complete"] is True
    assert (
        "verdict: " in stdout and "tokens/param" in s["verdict"] and "95% interval" in s["verdict"]
    )
    page = (out / "index.html").read_text()
    assert _headings(page)[:2] == ["Verdict", "Setup"]
    for f in ("paired_differences", "paired_curves", "loss_curves"):
        assert (out / s["files"][f]).is_file()


def test_replicate_burns_in_then_reweights(replicate: Run) -> None:
    _, s, _ = replicate
    run = Path(s["runs"]["linupper-r0.4"]["run_dirs"][0])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    burn = round(0.05 * s["protocol"]["steps"])
    assert all(
        r["reweight/max_weight_x_m"] == pytest.approx(1.0) for r in rows if r["step"] <= burn
    )
    assert max(r["reweight/max_weight_x_m"] for r in rows if r["step"] > burn + 1) > 1.01


def test_replicate_no_train_reports_the_same_numbers(
    replicate: Run, tmp_path_factory: pytest.TempPathFactory
) -> None:
    out, s, _ = replicate
    with lock(tmp_path_factory, "replicate"):
        rc, stdout, err = _cli(
            "experiment", "replicate", "--quick", "--out", str(out), "--no-train"
        )
    assert rc == 0 and "training" not in stdout.replace("short-run", ""), err
    again = json.loads((out / "summary.json").read_text())
    assert again["runs"].keys() == s["runs"].keys() and again["verdict"] == s["verdict"]
    for arm, r in s["runs"].items():
        assert again["runs"][arm]["diff_vs_uniform"] == r["diff_vs_uniform"]


def test_noise_labels_corrupted_sequences(noise: Run) -> None:
    out, s, _ = noise
    arms = s["arms"]
    assert len(arms) == 12
    for name, a in arms.items():
        for key in ("corrupted_sample_share", "corrupted_weight_share", "clean_val_loss"):
            assert _finite(a[key]), (name, key)
        if a["corrupted_domain"] is None:
            assert a["corrupted_sample_share"] == 0.0
        else:
            assert a["corrupted_sample_share"] == pytest.approx(a["corrupted_fraction"], abs=0.04)
        if name.startswith("uniform"):  # uniform weights: weight share = sample share
            assert a["corrupted_weight_share"] == pytest.approx(
                a["corrupted_sample_share"], abs=1e-4
            )
        else:
            assert len(a["diff_vs_uniform"]["ci95"]) == 2
    assert all(s["same_batches_per_seed"].values())
    # The noise domain holds exactly the random tokens: uniform over the word tokens, so
    # its empirical entropy is close to log K; the repeat domain holds a few sequences.
    from lossreweight.data import prepare_data
    from lossreweight.train import load_config

    resolved = json.loads(
        (Path(s["runs"]["uniform@noise20"]["run_dirs"][0]) / "resolved_config.json").read_text()
    )
    data = prepare_data(
        load_config("tiny", []).data.model_validate(resolved["data"]), progress=False
    )
    tokens = data.tokens("train", "noise")
    tokens = tokens[tokens != data.load_tokenizer().eos_id]
    _, counts = np.unique(tokens, return_counts=True)
    p = counts / counts.sum()
    k = s["noise_vocabulary"]
    assert len(counts) <= k and -(p * np.log(p)).sum() > 0.97 * math.log(k)
    resolved = json.loads(
        (Path(s["runs"]["uniform@repeat20"]["run_dirs"][0]) / "resolved_config.json").read_text()
    )
    data = prepare_data(
        load_config("tiny", []).data.model_validate(resolved["data"]), progress=False
    )
    assert 1 <= data.train_sequences("repeat") <= 9  # a few sequences, seen over and over
    assert _headings((out / "index.html").read_text())[:2] == ["Verdict", "Setup"]


def test_scale_same_tokens_per_param_at_every_size(scale: Run) -> None:
    _, s, _ = scale
    sizes = list(s["sizes"].values())
    assert [z["params"] for z in sizes] == sorted(z["params"] for z in sizes) and len(sizes) == 3
    for row in s["setup"]:
        assert row["tokens_per_param"] == pytest.approx(TOKENS_PER_PARAM, rel=0.1)
    for size, z in s["sizes"].items():
        lin, uni = s["runs"][f"linupper@{size}"], s["runs"][f"uniform@{size}"]
        per = [
            a - b
            for a, b in zip(
                lin["per_seed"]["val_loss_domain_avg"],
                uni["per_seed"]["val_loss_domain_avg"],
                strict=True,
            )
        ]
        assert z["gap"]["per_seed"] == pytest.approx(per)
    assert len(s["gap_change"]["per_seed"]) == 2 and "tiny-a" in s["verdict"]


def test_scale_stopped_before_the_largest_size_says_so(
    scale: Run, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """The largest size trains last; a study stopped before it reports the trend over the sizes
    that ran and names the one that did not (--no-train on a copy without its runs)."""
    import shutil

    src, s, _ = scale
    sizes = list(s["sizes"])
    out = tmp_path / "scale"
    with lock(tmp_path_factory, "scale"):
        shutil.copytree(src, out, symlinks=True)
    for arm in (f"uniform@{sizes[-1]}", f"linupper@{sizes[-1]}"):
        for run in s["runs"][arm]["run_dirs"]:
            shutil.rmtree(out / "runs" / Path(run).name)
    rc, stdout, err = _cli("experiment", "scale", "--quick", "--out", str(out), "--no-train")
    assert rc == 0 and "training" not in stdout, err
    p = json.loads((out / "summary.json").read_text())
    assert p["complete"] is False and p["verdict"].startswith("Partial result")
    assert (
        f"{sizes[-1]} not run yet" in p["verdict"] and p["sizes"][sizes[-1]]["gap"]["seeds"] == []
    )
    ch = p["gap_change"]
    assert (ch["from"], ch["to"]) == (sizes[0], sizes[1]) and len(ch["per_seed"]) == 2
    assert ch["per_seed"] == pytest.approx(
        [
            b - a
            for a, b in zip(
                s["sizes"][sizes[0]]["gap"]["per_seed"],
                s["sizes"][sizes[1]]["gap"]["per_seed"],
                strict=True,
            )
        ]
    )
    assert "not run yet" in (out / "index.html").read_text()


def test_report_never_overwrites_what_it_did_not_write(replicate: Run, tmp_path: Path) -> None:
    out = replicate[0]
    stranger = tmp_path / "notes.html"
    stranger.write_text("<p>my notes</p>")
    rc, _, err = _cli("report", str(out), "--out", str(stranger))
    assert rc == 2 and "--force" in err and err.count("\n") == 1
    assert stranger.read_text() == "<p>my notes</p>"
    # Its own summary.json (or any non-HTML file) is never a target, --force or not.
    before = (out / "summary.json").read_bytes()
    for extra in ((), ("--force",)):
        rc, _, err = _cli("report", str(out), "--out", str(out / "summary.json"), *extra)
        assert rc == 2 and ".html" in err
    assert (out / "summary.json").read_bytes() == before
    # Nor anything inside a training run.
    run = Path(replicate[1]["runs"]["uniform"]["run_dirs"][0])
    rc, _, err = _cli("report", str(out), "--out", str(run / "page.html"), "--force")
    assert rc == 2 and "inside the training run" in err and not (run / "page.html").exists()
    # A page it wrote is replaced freely; a stranger's page only with --force.
    page = tmp_path / "all.html"
    assert _cli("report", str(out), "--out", str(page))[0] == 0
    assert _cli("report", str(out), "--out", str(page))[0] == 0
    assert _cli("report", str(out), "--out", str(stranger), "--force")[0] == 0
    # A link at --out is replaced by the page, never written through.
    link, target = tmp_path / "link.html", tmp_path / "target.html"
    target.write_text("<p>the link's target</p>")
    link.symlink_to(target)
    assert _cli("report", str(out), "--out", str(link), "--force")[0] == 0
    assert target.read_text() == "<p>the link's target</p>" and not link.is_symlink()
    text = page.read_text()
    assert _headings(text)[0] == "Verdicts" and replicate[1]["verdict"] in text.replace(
        "&#x27;", "'"
    )
