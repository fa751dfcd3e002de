"""Helpers shared by the reliability suite (tests/test_reliability_*.py); no tests here.

The suite runs `lossreweight train` as a real subprocess where a real signal or a real
SIGKILL is the point, and in-process (`cli.main`) where a fault is injected by monkeypatching.
Test-only fault hooks: $LOSSREWEIGHT_FAULT (lossreweight.train.runtime.fault_point).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from train_utils import TINY_OVERRIDES, deterministic

import lossreweight
from lossreweight.rundir import read_metrics
from lossreweight.train import load_config, train

# 16 steps, an evaluation every 4 and a checkpoint every 2: several kill points per run.
MAX_STEPS = 16
RUN = [*TINY_OVERRIDES, f"train.max_steps={MAX_STEPS}", "eval.every=4", "checkpoint.every=2"]


def train_cmd(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lossreweight.cli",
        "train",
        "tiny",
        "--out",
        str(out),
        *RUN,
        *extra,
    ]


def child_env(fault: str | None = None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}
    env.pop("LOSSREWEIGHT_FAULT", None)
    if fault:
        env["LOSSREWEIGHT_FAULT"] = fault
    return env


def start(out: Path, *extra: str, fault: str | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        train_cmd(out, *extra),
        env=child_env(fault),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cli(
    out: Path, *extra: str, fault: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        train_cmd(out, *extra),
        env=child_env(fault),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    """Wait for `proc`; its exit code and stderr."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def wait_for(
    cond: Callable[[], bool], proc: subprocess.Popen[str] | None = None, timeout: float = 60
) -> None:
    """Poll `cond` every 5 ms (fails if `proc` exits first, or after `timeout` s)."""
    end = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"process exited ({proc.returncode}) first: "
                f"{proc.stderr.read()[-2000:] if proc.stderr else ''}"
            )
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.005)


def logged_steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run_dir)]


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The run's records without wall-clock fields."""
    return deterministic(read_metrics(run_dir))


def reference_metrics(out: Path, *extra: str) -> list[dict[str, Any]]:
    """An uninterrupted in-process run of the same settings (bitwise the same as the CLI's)."""
    train(load_config("tiny", [*RUN, *extra]), out)
    return metrics(out)


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` (relative path -> sha256, or "dir"): 'nothing was written' checks."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "dir"
        for p in sorted(root.rglob("*"))
    }


def one_line(err: str) -> str:
    """The single line a user error prints: no traceback, no second line."""
    assert "Traceback" not in err, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err


# Our package's folder: a traceback frame is ours when its file lies in it. (Not "the path
# contains 'lossreweight'": a clone's folder has that name too, and then so does every frame.)
PACKAGE_DIR = Path(lossreweight.__file__).resolve().parent


def our_frames(err: str) -> list[str]:
    """The traceback lines of `err` that point into our package."""
    frames = []
    for line in err.splitlines():
        m = re.match(r'\s*File "([^"]+)"', line)
        if m and Path(os.path.realpath(m.group(1))).is_relative_to(PACKAGE_DIR):
            frames.append(line)
    return frames


def sigkill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
