"""Strategies from installed packages (entry point group `lossreweight.strategies`): the
example package examples/strategy_plugin, installed with pip into a folder on sys.path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from cli_utils import pip_install, run_cli

from lossreweight.reweighting import available_strategies, compute_weights, get_strategy

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "strategy_plugin"


@pytest.fixture(scope="module")
def example_plugin(tmp_path_factory) -> Path:
    return pip_install(EXAMPLE, tmp_path_factory.mktemp("plugin") / "site")


def test_installed_strategy_is_found_and_used(example_plugin, monkeypatch):
    assert "linupper_steep" not in available_strategies()
    monkeypatch.syspath_prepend(str(example_plugin))
    assert "linupper_steep" in available_strategies()
    fn = get_strategy("linupper_steep")
    losses = torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0])
    # Twice LinUpper's slope is LinUpper at half the temperature.
    steep = compute_weights(losses, strategy=fn, temperature=0.8)
    plain = compute_weights(losses, strategy=get_strategy("linupper"), temperature=0.4)
    torch.testing.assert_close(steep, plain)


def test_the_config_and_the_command_line_accept_it(example_plugin, monkeypatch):
    monkeypatch.syspath_prepend(str(example_plugin))
    rc, out, err = run_cli("config", "tiny", "reweight.strategy=linupper_steep")
    assert rc == 0, err
    assert "strategy: linupper_steep" in out


def _install_variant(tmp_path: Path, old: str, new: str) -> Path:
    """The example package with `old` replaced by `new` in its entry point, installed."""
    src = tmp_path / "variant"
    shutil.copytree(EXAMPLE, src)
    toml = src / "pyproject.toml"
    toml.write_text(toml.read_text().replace(old, new))
    return pip_install(src, tmp_path / "site")


def test_a_broken_plugin_is_one_config_error(tmp_path, monkeypatch):
    site = _install_variant(tmp_path, "example:linupper_steep", "example:missing")
    monkeypatch.syspath_prepend(str(site))
    rc, _, err = run_cli("config", "tiny", "reweight.strategy=linupper_steep")
    assert rc != 0
    assert "could not be loaded" in err and "AttributeError" in err
    assert len(err.strip().splitlines()) == 1
    # An unrelated strategy still works: a broken plugin costs only its own name.
    assert run_cli("config", "tiny", "reweight.strategy=quadratic")[0] == 0


def test_a_plugin_cannot_shadow_a_builtin(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(_install_variant(tmp_path, "linupper_steep = ", "linupper = ")))
    assert get_strategy("linupper").__module__ == "lossreweight.reweighting.strategies"
