"""Extras and packaging: the library installs alone, a missing extra is one line naming the
`pip install`, the extras' lists agree with pyproject.toml, and the sdist is complete."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import tomllib
from pathlib import Path

import pytest

from lossreweight import extras
from lossreweight.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OPTIONAL = PYPROJECT["project"]["optional-dependencies"]
# Distribution name -> import name, where they differ.
IMPORT_NAME = {"pyyaml": "yaml", "lm-eval": "lm_eval"}
# What the pipeline needs and the library must not.
PIPELINE = [
    "yaml",
    "pydantic",
    "matplotlib",
    "tensorboard",
    "tqdm",
    "safetensors",
    "tokenizers",
    "wandb",
    "datasets",
    "pyarrow",
    "zstandard",
    "lm_eval",
]
CORE_MODULES = (
    "lossreweight.integrations",
    "lossreweight.losses",
    "lossreweight.reweighting",
    # Standard-library-only leaves (tests/test_architecture.py's LEAVES) the library uses: the
    # metric vocabulary (the integrations log its names) and entry-point discovery (strategies).
    "lossreweight.metric_names",
    "lossreweight.plugins",
)


def _name(requirement: str) -> str:
    return requirement.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip()


def _python(code: str, *, blocked: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter where each module in `blocked` cannot be imported."""
    prelude = f"import sys\nfor _m in {blocked!r}:\n    sys.modules[_m] = None\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# -- the lists agree -------------------------------------------------------------------------
def test_core_install_is_torch_and_numpy_only():
    assert sorted(_name(r) for r in PYPROJECT["project"]["dependencies"]) == ["numpy", "torch"]


def test_extra_modules_match_pyproject():
    for extra, modules in extras.EXTRA_MODULES.items():
        dists = [_name(r) for r in OPTIONAL[extra]]
        assert sorted(IMPORT_NAME.get(d, d.replace("-", "_")) for d in dists) == sorted(modules), (
            extra
        )
    for extra in extras.DISTRIBUTION_EXTRAS:
        assert OPTIONAL[extra], extra


def test_all_is_every_extra_but_test():
    (all_req,) = OPTIONAL["all"]
    named = set(all_req.split("[")[1].split("]")[0].split(","))
    assert named == set(OPTIONAL) - {"all", "test"}


def test_every_command_names_known_extras():
    known = set(extras.EXTRA_MODULES) | set(extras.DISTRIBUTION_EXTRAS)
    for name, _module, _help, needs in COMMANDS:
        assert needs and set(needs) <= known, name


# -- a missing extra -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "blocked", "extra"),
    [
        (["train", "tiny", "--out", "run"], ["yaml"], "train"),
        (["prepare", "tiny"], ["pydantic"], "train"),
        (["config", "tiny"], ["tokenizers"], "train"),
        (["compare", "tiny", "--out", "c", "--strategies", "uniform"], ["matplotlib"], "report"),
        (["report", "a", "--out", "r.html"], ["matplotlib"], "report"),
    ],
)
def test_missing_extra_is_one_line_naming_the_install(tmp_path, argv, blocked, extra):
    code = f"from lossreweight.cli import main\nsys.exit(main({argv!r}))"
    proc = _python(code, blocked=blocked, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"pip install 'lossreweight[{extra}]'" in proc.stderr
    assert blocked[0] in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_every_missing_extra_is_named_in_one_install_line(tmp_path):
    code = "from lossreweight.cli import main\nsys.exit(main(['demo', '--out', 'd']))"
    proc = _python(code, blocked=["yaml", "matplotlib"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'lossreweight[train,report]'" in proc.stderr
    assert "train: yaml; report: matplotlib" in proc.stderr


def test_help_works_without_the_pipeline():
    proc = _python(
        "from lossreweight.cli import main\nsys.exit(main(['--help']))", blocked=PIPELINE
    )
    assert proc.returncode == 0, proc.stderr
    assert "config" in proc.stdout and "train" in proc.stdout


def test_missing_corpus_distribution_names_the_corpus_extra(monkeypatch, tmp_path, capsys):
    dists = extras.extra_distributions("corpus")
    if not dists:
        pytest.skip("lossreweight is not installed: no metadata to read the corpus extra from")
    assert sorted(dists) == sorted(_name(r) for r in OPTIONAL["corpus"])
    monkeypatch.setattr(extras, "_installed", lambda dist: dist != dists[0])
    assert main(["demo", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert dists[0] in err and "pip install 'lossreweight[corpus]'" in err
    assert not (tmp_path / "d").exists()


# -- the library without the pipeline --------------------------------------------------------
def test_library_imports_and_works_without_pipeline_or_framework_deps():
    code = """
        import torch
        from lossreweight import Reweighter, per_sample_loss
        import lossreweight.integrations  # transformers and lightning load only on use
        logits = torch.randn(4, 5, 11)
        labels = torch.randint(0, 11, (4, 5))
        losses, _ = per_sample_loss(logits, labels)
        out = Reweighter("linupper", temperature=0.4).reweight(losses, step=0)
        assert torch.isclose(out.weights.sum(), torch.tensor(1.0))
        ours = sorted(m for m in sys.modules if m.startswith("lossreweight."))
        print(" ".join(ours))
    """
    proc = _python(code, blocked=[*PIPELINE, "transformers", "lightning", "pytorch_lightning"])
    assert proc.returncode == 0, proc.stderr
    assert all(m.startswith(CORE_MODULES) for m in proc.stdout.split()), proc.stdout


def test_integration_modules_import_without_the_pipeline():
    # transformers itself needs yaml, tqdm, safetensors and tokenizers, and lightning probes
    # matplotlib's metadata, so those stay; what only the pipeline needs is blocked. And the
    # modules loaded are the library's own: nothing of the pipeline is imported on the way.
    code = """
        import lossreweight.integrations.hf_trainer, lossreweight.integrations.hf_loss
        import lossreweight.integrations.lightning
        print(" ".join(sorted(m for m in sys.modules if m.startswith("lossreweight."))))
    """
    proc = _python(code, blocked=["pydantic", "tensorboard", "wandb", "lm_eval", "datasets"])
    assert proc.returncode == 0, proc.stderr
    loaded = proc.stdout.split()
    assert "lossreweight.integrations.lightning" in loaded
    assert all(m.startswith(CORE_MODULES) for m in loaded), loaded


# -- packaging -------------------------------------------------------------------------------
def test_license_file_matches_pyproject():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text
    assert PYPROJECT["project"]["urls"]


def test_sdist_builds_without_deprecation_warnings_and_carries_docs_and_examples(tmp_path):
    pytest.importorskip("build", reason="the test extra installs `build`")
    src = tmp_path / "src-tree"
    keep = ["pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "Makefile"]
    src.mkdir()
    for name in keep:
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for folder in ["src", "docs", "examples", "benchmarks", "tests", "tools"]:
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore, symlinks=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--sdist",
            "--no-isolation",
            "--outdir",
            str(tmp_path / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "deprecat" not in (proc.stdout + proc.stderr).lower(), proc.stdout + proc.stderr
    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for expected in [
        "LICENSE",
        "README.md",
        "docs/config.md",
        "docs/data.md",
        "examples/hf_trainer_reweighting.py",
        "src/lossreweight/configs/gpt2-paper.yaml",
        "tools/install_torch.py",  # the Makefile's torch install
        "tests/test_config.py",
    ]:
        assert expected in names, expected
