"""Crashes and signals against a real `lossreweight train` subprocess.

A user loses at most the work since the last checkpoint: after kill -9 anywhere (even
mid-checkpoint-write), re-running the same command resumes and its metrics equal the
uninterrupted run's, step by step. SIGTERM / Ctrl-C save and exit 75 (stopped, not finished:
STOPPED_EXIT); a second one, or one
before training starts, exits at once with one line.
"""

from __future__ import annotations

import random
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from test_reliability_helpers import (
    MAX_STEPS,
    finish,
    logged_steps,
    metrics,
    one_line,
    reference_metrics,
    run_cli,
    sigkill,
    start,
    wait_for,
)

from lossreweight.commands.train import STOPPED_EXIT
from lossreweight.rundir import read_metrics

pytestmark = pytest.mark.xdist_group("reliability")


def complete_checkpoints(run_dir: Path) -> list[int]:
    """Steps of the checkpoint directories; each must be complete (never a half one)."""
    dirs = sorted((run_dir / "checkpoints").glob("step_*"))
    assert all((d / "COMPLETE").is_file() for d in dirs), dirs
    return [int(d.name.removeprefix("step_")) for d in dirs]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return reference_metrics(tmp_path_factory.mktemp("reference") / "run")


def test_kill9_anywhere_then_resume_equals_uninterrupted(
    tmp_path: Path, reference: list[dict[str, Any]]
) -> None:
    out = tmp_path / "run"
    # Before the first checkpoint (killed as step 2 ends, its records written, its checkpoint
    # not): the re-run starts over and must not keep those records twice. (A step's record is
    # written one step later, or at once at a checkpoint/evaluation step: the step never waits.)
    assert run_cli(out, fault="step:2:kill").returncode == -signal.SIGKILL
    assert logged_steps(out) == [1, 2] and complete_checkpoints(out) == []
    # Mid-write of checkpoint 4: its model file is written, the rest is not.
    assert run_cli(out, fault="save:4:kill").returncode == -signal.SIGKILL
    assert (out / "checkpoints" / ".tmp-step_00000004" / "model.safetensors").is_file()
    assert complete_checkpoints(out) == [2]
    # Two random moments (seeded): mid-step, mid-evaluation, mid-save or mid-log-write. The
    # kill follows a step past every record already in the file (those of the killed run are
    # still there until the re-run truncates them), and leaves >= 4 steps of margin.
    rng = random.Random(1234)
    for _ in range(2):
        done = max(logged_steps(out))
        assert done + 1 <= MAX_STEPS - 4
        k = rng.randint(done + 1, min(done + 3, MAX_STEPS - 4))
        proc = start(out)
        wait_for(lambda k=k: max(logged_steps(out), default=0) >= k, proc)
        time.sleep(rng.uniform(0.0, 0.1))  # about one step
        sigkill(proc)
        assert proc.returncode == -signal.SIGKILL, "the run ended before the kill"
        assert complete_checkpoints(out)  # never a half-written newest checkpoint
    proc = run_cli(out)
    assert proc.returncode == 0, proc.stderr
    assert metrics(out) == reference
    assert not list((out / "checkpoints").glob(".*"))  # crash leftovers cleaned up


def test_sigterm_saves_stops_and_resumes(tmp_path: Path, reference: list[dict[str, Any]]) -> None:
    out = tmp_path / "run"
    proc = start(out, "checkpoint.every=0")  # the only checkpoint is the one SIGTERM asks for
    wait_for(lambda: max(logged_steps(out), default=0) >= 3, proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    # Promptness is pinned by `stopped < MAX_STEPS` below; the time bound only catches a hang
    # (it once took 10 s on a loaded 2-core machine).
    assert code == STOPPED_EXIT and time.monotonic() - sent < 60, err
    stopped = int(re.search(r"stopped at step (\d+); checkpoint saved", one_line(err)).group(1))
    assert stopped < MAX_STEPS and complete_checkpoints(out) == [stopped] == logged_steps(out)[-1:]
    assert not (out / "final.json").exists()
    assert run_cli(out, "checkpoint.every=0").returncode == 0
    assert metrics(out) == reference


def test_ctrl_c_during_evaluation_finishes_it_and_saves(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli(out, fault="eval:4:int")  # SIGINT as the evaluation after step 4 starts
    assert proc.returncode == STOPPED_EXIT and "stopped at step 4" in one_line(proc.stderr)
    last = read_metrics(out)[-1]
    assert last["step"] == 4 and "eval/loss" in last  # the evaluation completed and was logged
    assert complete_checkpoints(out) == [2, 4]


def test_second_ctrl_c_aborts_at_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli(out, fault="step:3:int2")  # two SIGINTs at the end of step 3
    assert proc.returncode == 130
    assert "interrupted at once" in one_line(proc.stderr) and "step_00000002" in proc.stderr
    assert complete_checkpoints(out) == [2]  # no checkpoint for step 3: it aborted before saving


def test_signal_during_data_preparation_exits_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data" / "prepared"  # a fresh folder: the tokenizer is trained (~1 s)
    out = tmp_path / "run"
    proc = start(out, "--data-dir", str(data))
    wait_for(lambda: data.parent.is_dir() and any(data.parent.glob(".prepared.partial-*")), proc)
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 130 and "before training started" in one_line(err)
    assert not out.exists() and list(data.parent.iterdir()) == []  # no run dir, no half data
