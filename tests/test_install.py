"""`make`'s torch install (tools/install_torch.py): the CPU build, never plain PyPI's CUDA one."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "install_torch.py"
UNREACHABLE = "http://127.0.0.1:9/whl/cpu"  # the discard port: refused at once


def _module():
    spec = importlib.util.spec_from_file_location("install_torch", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _report(*packages: tuple[str, str]) -> dict:
    return {"install": [{"metadata": {"name": n, "version": v}} for n, v in packages]}


# What plain PyPI resolves for torch==2.13.0 on Linux (abridged), and the CPU index's build.
CUDA_REPORT = _report(
    ("torch", "2.13.0"), ("nvidia-cublas-cu12", "12.8.4.1"), ("triton", "3.5.0"), ("sympy", "1.14")
)
CPU_REPORT = _report(("torch", "2.13.0+cpu"), ("sympy", "1.14.0"), ("filelock", "3.20.0"))


def test_cuda_packages_are_named_and_cpu_builds_pass():
    mod = _module()
    assert mod.cuda_packages(CUDA_REPORT) == ["nvidia-cublas-cu12==12.8.4.1", "triton==3.5.0"]
    assert mod.cuda_packages(_report(("torch", "2.13.0+cu128"))) == ["torch==2.13.0+cu128"]
    assert mod.cuda_packages(CPU_REPORT) == []


def test_fallback_refuses_a_cuda_resolution_and_installs_nothing(monkeypatch, capsys):
    mod = _module()
    calls = []
    monkeypatch.setattr(mod, "resolve", lambda specs, route: calls.append(route) or CUDA_REPORT)
    monkeypatch.setattr(mod.subprocess, "run", lambda *a, **k: pytest.fail("installed anyway"))
    assert mod.main(["--index", UNREACHABLE, "--timeout", "2"]) == 1
    assert calls == [[]]  # the index did not answer: pip's own configuration was asked
    out = capsys.readouterr().out
    assert "did not answer" in out and "nvidia-cublas-cu12" in out and "TORCH_INDEX" in out


def test_reachable_index_is_the_route(monkeypatch, capsys):
    mod = _module()
    installed = []
    monkeypatch.setattr(mod, "index_answers", lambda url, timeout: True)
    monkeypatch.setattr(mod, "resolve", lambda specs, route: CPU_REPORT)
    monkeypatch.setattr(
        mod.subprocess,
        "run",
        lambda cmd, **k: installed.append(cmd) or subprocess.CompletedProcess(cmd, 0),
    )
    assert mod.main(["--index", "https://mirror.example/cpu"]) == 0
    (cmd,) = installed
    assert cmd[-3:] == ["torch==2.13.0", "--index-url", "https://mirror.example/cpu"]


def test_makefile_installs_torch_through_the_script():
    text = (ROOT / "Makefile").read_text()
    assert (
        "tools/install_torch.py" in text
        and "TORCH_INDEX ?= https://download.pytorch.org/whl/cpu" in text
    )
    assert 'pip install -q "$(TORCH_SPEC)"' not in text  # the bare pin pulled the CUDA build


def test_dry_run_of_the_pin_pulls_no_cuda_package():
    """pip's real resolution of the Makefile's pin with the CPU index unreachable (as on this
    project's CI machine, where only PyPI and local wheels answer): no nvidia/cuda package."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--index", UNREACHABLE, "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if proc.returncode == 3:
        pytest.skip(f"pip cannot resolve torch here (no index answers): {proc.stdout.strip()}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no CUDA" in proc.stdout and "torch" in proc.stdout
    assert "nvidia" not in proc.stdout.lower()
