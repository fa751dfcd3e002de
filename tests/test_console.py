"""What `lossreweight train` says on the console: a line every log.every steps, the
evaluations, preparing, resuming, continuing, the summary; bars only on a terminal; the exit
status of a run stopped by a signal."""

from __future__ import annotations

import io
import logging
import sys

import pytest
from cli_utils import run_cli
from train_utils import TINY_OVERRIDES

from lossreweight.commands.train import STOPPED_EXIT
from lossreweight.data.build import progress_bar
from lossreweight.train.console import Console, step_line


def test_step_line_format() -> None:
    rec = {
        "step": 300,
        "tokens": 9_830_400,
        "train/loss": 3.45121,
        "train/lr": 2.85e-3,
        "train/tokens_per_s": 251034.2,
        "reweight/ess_fraction": 0.9312,
    }
    line = "step 300/1000 | tokens 9.8M | loss 3.4512 | lr 2.85e-03 | 251,034 tok/s | ess 93%"
    assert step_line(300, 1000, rec, None) == line
    rec.update({"eval/loss": 3.50207, "eval/worst_domain_loss": 4.10234})
    assert step_line(300, 1000, rec, "math") == line + " | val loss 3.5021 | worst math 4.1023"
    assert step_line(300, 1000, {"step": 300, "tokens": 5}, None).endswith("n/a tok/s | ess n/a")


def _lines(out: str, prefix: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(prefix)]


def test_train_console_from_start_to_continuation(tmp_path) -> None:
    run, data = tmp_path / "run", tmp_path / "data"  # fresh data: it is prepared here
    args = ["train", "tiny", "--out", str(run), "--data-dir", str(data), *TINY_OVERRIDES]
    args += ["log.every=2", "log.progress=true"]
    rc, out, err = run_cli(*args)
    assert rc == 0, err
    assert out.startswith(f"preparing data in {data} ...\n")
    steps = _lines(out, "step ")
    assert [s.split(" |")[0] for s in steps] == ["step 2/6", "step 3/6", "step 4/6", "step 6/6"]
    assert all(" | loss " in s and " | lr " in s and " tok/s | ess " in s for s in steps)
    assert ["val loss" in s for s in steps] == [False, True, False, True]
    assert _lines(out, "trained 6 steps (768 tokens) in ")
    assert err == ""  # stderr is not a terminal here: no progress bar at all

    rc, out, _ = run_cli(*args)  # the same command again: nothing left to train
    assert rc == 0
    assert _lines(out, "already finished at step 6 (768 tokens), val loss ")
    assert not _lines(out, "preparing") + _lines(out, "resuming") + _lines(out, "trained")

    rc, out, _ = run_cli(*args, "--max-steps", "8")  # continued
    assert rc == 0
    assert _lines(out, f"resuming from step 6 (checkpoint {run / 'checkpoints' / 'step_00000006'})")
    assert _lines(out, "continuing from step 6 to 8 on the schedule laid out over the first 6")
    assert _lines(out, "trained steps 7-8 (2 steps; 1.0k tokens in all) in ")


def test_sigterm_stop_exits_with_the_stopped_status(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOSSREWEIGHT_FAULT", "step:4:term")  # a SIGTERM at the end of step 4
    rc, _, err = run_cli("train", "tiny", "--out", str(tmp_path / "run"), *TINY_OVERRIDES)
    assert rc == STOPPED_EXIT == 75
    assert "stopped at step 4; checkpoint saved" in err and "exit status 75" in err
    monkeypatch.delenv("LOSSREWEIGHT_FAULT")
    rc, out, _ = run_cli("train", "tiny", "--out", str(tmp_path / "run"), *TINY_OVERRIDES)
    assert rc == 0 and _lines(out, "resuming from step 4 ")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_prepare_bar_only_on_a_terminal(monkeypatch) -> None:
    # The trainer's bar: test_train_components.test_progress_bar_only_on_a_terminal.
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_bar(True, 10, "prepare").disable
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert not progress_bar(True, 10, "prepare").disable
    assert progress_bar(False, 10, "prepare").disable


def test_console_is_silent_off_the_main_rank(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lossreweight"):
        Console(enabled=False, progress=True, max_steps=5, initial=0, desc="x").info("hello")
        Console(enabled=True, progress=True, max_steps=5, initial=0, desc="x").info("hello")
    assert [r.getMessage() for r in caplog.records] == ["hello"]
