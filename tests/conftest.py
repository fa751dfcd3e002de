"""Test-wide settings: offline, deterministic, CPU, and a shared corpus cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# One cache for every test worker, so the tiny test corpus is tokenized once per machine.
os.environ.setdefault("LOSSREWEIGHT_CACHE", str(ROOT / ".cache" / "test-cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _torch_threads():
    import torch

    torch.set_num_threads(1)  # two xdist workers on two cores; also makes CPU math repeatable
    yield
