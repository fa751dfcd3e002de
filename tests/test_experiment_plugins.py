"""Studies from installed packages (entry point group `lossreweight.studies`): the example
package examples/study_plugin, installed with pip into a folder on sys.path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_utils import pip_install, run_cli

from lossreweight.experiments.studies import get_study, study_names

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "study_plugin"
NAME = "linupper-temperatures"


@pytest.fixture(scope="module")
def example_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pip_install(EXAMPLE, tmp_path_factory.mktemp("study-plugin") / "site")


def test_installed_study_is_listed_and_runs(
    example_study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert NAME not in study_names()
    monkeypatch.syspath_prepend(str(example_study))
    assert NAME in study_names()
    rc, text, _ = run_cli("experiment", "--help")
    assert rc == 0 and f"{NAME}: An example lossreweight study" in " ".join(text.split())
    out = tmp_path / "mine"
    rc, stdout, err = run_cli("experiment", NAME, "--quick", "--out", str(out))
    assert rc == 0, err
    s = json.loads((out / "summary.json").read_text())
    assert s["study"] == NAME and s["quick"] is True and s["complete"] is True
    assert list(s["runs"]) == ["uniform", "linupper-r0.4", "linupper-r1"]
    assert len(s["runs"]["linupper-r1"]["diff_vs_uniform"]["val_loss"]["per_seed"]) == 2
    assert (out / "index.html").is_file() and f"verdict: {s['verdict']}" in stdout
    # Its folder is its own: another study may not write there.
    rc, _, err = run_cli("experiment", "strategies", "--quick", "--out", str(out))
    assert rc == 2 and f"experiment {NAME}" in err


def test_a_broken_study_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "broken"
    shutil.copytree(EXAMPLE, src)
    toml = src / "pyproject.toml"
    toml.write_text(toml.read_text().replace("example:STUDY", "example:MISSING"))
    monkeypatch.syspath_prepend(str(pip_install(src, tmp_path / "site")))
    rc, _, err = run_cli("experiment", NAME, "--quick", "--out", str(tmp_path / "x"))
    assert rc == 2 and "could not be loaded" in err and "AttributeError" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_an_installed_study_cannot_take_a_builtin_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "shadow"
    shutil.copytree(EXAMPLE, src)
    toml = src / "pyproject.toml"
    toml.write_text(toml.read_text().replace(f"{NAME} = ", "strategies = "))
    monkeypatch.syspath_prepend(str(pip_install(src, tmp_path / "site")))
    assert type(get_study("strategies")).__module__ == "lossreweight.experiments.studies.strategies"
    assert study_names().count("strategies") == 1
