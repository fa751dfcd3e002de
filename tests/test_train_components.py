"""The trainer's components on their own: the step guard (device-side skip), the async host
reads, metric names and sinks, the console; and the loop's promise that no
step waits for the device (no scalar read of a device tensor between evaluations/saves)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from train_utils import TINY_OVERRIDES, check_steps_for_syncs

from lossreweight.metric_names import eval_record
from lossreweight.rundir import read_metrics
from lossreweight.train import load_config, train
from lossreweight.train.console import Console
from lossreweight.train.failures import TrainingDiverged
from lossreweight.train.guard import StepGuard, check_divergence
from lossreweight.train.host_copy import Pending
from lossreweight.train.metrics import MetricsLogger


# -- the step guard ---------------------------------------------------------------------------
def _model_and_opt(fused: bool) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 1))
    return model, torch.optim.AdamW(
        model.parameters(), lr=0.1, weight_decay=0.1, fused=fused, foreach=None if fused else True
    )


def _backward(model: torch.nn.Module, bad: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss = model(torch.ones(2, 4)).sum() * (float("nan") if bad else 1.0)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"), foreach=True)
    return norm, {"weighted_loss": loss.detach(), "num_samples": torch.tensor(2.0)}


def _snapshot(model: torch.nn.Module, opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    out = [p.detach().clone() for p in model.parameters()]
    for s in opt.state.values():
        out += [t.clone() for t in s.values()]
    return out


@pytest.mark.parametrize("fused", [True, False], ids=["fused-found_inf", "foreach-masked"])
def test_skipped_step_leaves_params_and_state_bitwise(fused: bool) -> None:
    model, opt = _model_and_opt(fused)
    guard = StepGuard(opt, torch.device("cpu"), distributed=False)
    assert guard.fused == fused
    # A skipped first step: no update, and the state is a fresh optimizer's (zeros, step 0).
    first = [p.detach().clone() for p in model.parameters()]
    flags = guard.step(*_backward(model, bad=True))
    opt.zero_grad(set_to_none=True)
    assert flags["skipped"].item() == 1 and flags["nonfinite_streak"].item() == 1
    assert all(torch.equal(a, b) for a, b in zip(first, model.parameters(), strict=True))
    for s in opt.state.values():
        assert all(torch.count_nonzero(t) == 0 for t in s.values())
    # Two good steps, then a skipped one: everything as after the second.
    for _ in range(2):
        flags = guard.step(*_backward(model, bad=False))
        opt.zero_grad(set_to_none=True)
    assert flags["skipped"].item() == 0 and flags["nonfinite_streak"].item() == 0
    before = _snapshot(model, opt)
    flags = guard.step(*_backward(model, bad=True))
    opt.zero_grad(set_to_none=True)
    after = _snapshot(model, opt)
    assert len(before) == len(after) == 4 + 4 * 3  # params; exp_avg, exp_avg_sq, step each
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert flags["nonfinite_streak"].item() == 1
    assert guard.step(*_backward(model, bad=True))["nonfinite_streak"].item() == 2
    opt.zero_grad(set_to_none=True)
    assert guard.step(*_backward(model, bad=False))["nonfinite_streak"].item() == 0  # reset
    assert not all(torch.equal(a, b) for a, b in zip(after, _snapshot(model, opt), strict=True))


def test_no_valid_sample_is_skipped_too() -> None:
    model, opt = _model_and_opt(True)
    guard = StepGuard(opt, torch.device("cpu"), distributed=False)
    norm, stats = _backward(model, bad=False)
    flags = guard.step(norm, {**stats, "num_samples": torch.tensor(0.0)})
    assert flags["skipped"].item() == 1


def test_divergence_needs_the_limit_in_a_row(tmp_path: Path) -> None:
    check_divergence(2.0, 7, 3, tmp_path)  # below the limit: nothing
    with pytest.raises(
        TrainingDiverged,
        match=r"3 non-finite steps in a row .* the last at step 9; last good checkpoint: none",
    ):
        check_divergence(3.0, 9, 3, tmp_path)


# -- async host reads ---------------------------------------------------------------------------
def test_pending_reads_named_values() -> None:
    x = torch.tensor([1.0, 2.0, 3.0])
    p = Pending({"a": torch.tensor(4), "b": x, "c": torch.tensor(True)})
    x.add_(10)  # later work on the source does not change what was taken
    assert p.ready() and p.get() == {"a": 4.0, "b": [1.0, 2.0, 3.0], "c": 1.0}


# -- metric names and sinks -------------------------------------------------------------------
def test_tensorboard_tags_are_the_metric_names(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = {"train": {"lr": 0.001}, "model": {"dim": 32}}
    logger = MetricsLogger(
        tmp_path,
        enabled=True,
        tensorboard=True,
        wandb_project=None,
        wandb_run_name=None,
        config=config,
    )
    logger.log(
        {
            "step": 5,
            "tokens": 640,
            "train/loss": 2.0,
            "train/skipped": False,
            "eval/code/loss": float("nan"),
        }
    )
    logger.close()
    assert read_metrics(tmp_path) == [
        {
            "step": 5,
            "tokens": 640,
            "train/loss": 2.0,
            "train/skipped": False,
            "eval/code/loss": None,
        }
    ]
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert tags == {
        "train/loss",
        "train/skipped",
    }  # step/tokens are axes; NaN (null) is not a scalar
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(5, 2.0)]
    # The resolved config as text, as the HF Trainer writes its arguments (`args`).
    (text,) = acc.Tensors("config/text_summary")
    written = text.tensor_proto.string_val[0].decode()
    assert json.loads("\n".join(line[4:] for line in written.splitlines())) == config


def test_every_logged_key_is_documented(tmp_path: Path) -> None:
    train(load_config("tiny", [*TINY_OVERRIDES, "train.max_steps=3"]), tmp_path / "run")
    doc = (Path(__file__).parents[1] / "docs" / "metrics.md").read_text()
    domains = set(json.loads((tmp_path / "run" / "data.json").read_text())["domains"])
    keys = {k for r in read_metrics(tmp_path / "run") for k in r}
    generic = {
        "/".join("<domain>" if part in domains else part for part in k.split("/")) for k in keys
    }
    assert {"eval/<domain>/loss", "reweight/domain_weight_share/<domain>"} <= generic
    missing = sorted(k for k in generic if f"`{k}`" not in doc)
    assert not missing, f"keys of metrics.jsonl not in docs/metrics.md: {missing}"


# -- console: tests/test_console.py ---------------------------------------------------------


# -- no host synchronisation in the step path ---------------------------------------------------
class _ScalarReads(TorchDispatchMode):
    """Counts reads of a tensor's value into Python (item(), bool(), float(), int(), `if t:`):
    each is `aten._local_scalar_dense`, a device sync on a GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.active = False
        self.hits: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if self.active and func is torch.ops.aten._local_scalar_dense.default:
            import traceback

            self.hits.append("".join(traceback.format_stack(limit=8)))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "extra",
    [
        ["reweight.strategy=linupper", "train.grad_accum=2"],
        ["reweight.strategy=quadratic", "reweight.scope=step", "train.grad_accum=2"],
    ],
)
def test_no_scalar_read_of_a_device_tensor_between_evaluations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: list[str]
) -> None:
    reads = _ScalarReads()

    def on() -> None:
        reads.active = True

    def off() -> None:
        reads.active = False

    steps = check_steps_for_syncs(monkeypatch, on, off)
    # The library checks inputs eagerly only on a CPU, where reading a value is free; take the
    # path a GPU takes (no reads), so that any read left is the trainer's.
    import lossreweight.losses
    import lossreweight.reweighting.checks
    import lossreweight.reweighting.weights

    for module in (
        lossreweight.losses,
        lossreweight.reweighting.checks,
        lossreweight.reweighting.weights,
    ):
        monkeypatch.setattr(module, "on_cpu", lambda t: False)
    cfg = load_config(
        "tiny",
        [
            *TINY_OVERRIDES,
            "train.max_steps=8",
            "log.every=2",
            "eval.every=0",
            "checkpoint.every=0",
            *extra,
        ],
    )
    with reads:
        on()
        assert torch.ones(()).item() == 1.0 and len(reads.hits) == 1  # the detector works
        reads.hits.clear()
        off()
        train(cfg, tmp_path / "run")
    assert steps == list(range(8))
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [2, 4, 6, 8]
    assert not reads.hits, reads.hits[0]


# -- the reporter ---------------------------------------------------------------------------------
class _FakeEvaluator:
    last: dict[str, Any] = {}

    def due(self, step: int, *, last: bool = False) -> bool:
        return last or step % 4 == 0

    def run(self) -> dict[str, Any]:
        self.last = eval_record({"a": 1.0, "b": 4.0}, 2.0, 64)
        return self.last


def _values(skipped: bool, streak: int, stop: bool = False) -> dict[str, torch.Tensor]:
    t = torch.tensor
    return {
        "skipped": t(float(skipped)),
        "nonfinite_streak": t(float(streak)),
        "stop": t(float(stop)),
        "grad_norm": t(0.5),
        "mean_loss": t(3.0),
        "weighted_loss": t(3.5),
        "num_samples": t(8.0),
    }


def test_reporter_reads_late_logs_due_and_skipped_steps(tmp_path: Path) -> None:
    from lossreweight.train.reporter import StepReporter

    logger = MetricsLogger(
        tmp_path,
        enabled=True,
        tensorboard=False,
        wandb_project=None,
        wandb_run_name=None,
        config={},
    )
    console = Console(enabled=False, progress=False, max_steps=8, initial=0, desc="x")
    rep = StepReporter(
        evaluator=_FakeEvaluator(),
        logger=logger,
        console=console,
        domains=["a", "b"],
        log_every=3,
        max_steps=8,
        max_nonfinite=2,
        run_dir=tmp_path,
    )
    rep.queue(1, 10, 0.1, _values(False, 0))
    rep.queue(2, 20, 0.1, _values(True, 1, stop=True))
    assert (
        rep.report(keep=1) is False and read_metrics(tmp_path) == []
    )  # step 1: not due; step 2 kept
    assert rep.report() is True  # step 2: skipped (logged) and a rank asked to stop
    rep.queue(3, 30, 0.1, _values(False, 0))
    rep.queue(4, 40, 0.1, _values(False, 0))
    rep.report()
    rows = read_metrics(tmp_path)
    assert [(r["step"], r["train/skipped"]) for r in rows] == [(2, True), (3, False), (4, False)]
    assert rows[-1]["eval/worst_domain_loss"] == 4.0 and "eval/loss" not in rows[1]
    rep.queue(5, 50, 0.1, _values(True, 1))
    rep.queue(6, 60, 0.1, _values(True, 2))
    with pytest.raises(TrainingDiverged, match="the last at step 6"):
        rep.report()
    logger.close()


def test_progress_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, shown in ((io.StringIO(), False), (Terminal(), True)):
        monkeypatch.setattr(sys, "stderr", stream)
        console = Console(enabled=True, progress=True, max_steps=4, initial=1, desc="linupper")
        console.advance()
        console.close()
        assert (console._bar is not None) == shown
        assert ("linupper" in stream.getvalue() and "1/4" in stream.getvalue()) == shown


def test_wandb_gets_the_same_names_with_step_as_x_axis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    calls: list[tuple[dict[str, Any], int]] = []

    class Run:
        def log(self, data: dict[str, Any], step: int) -> None:
            calls.append((data, step))

        def finish(self) -> None:
            calls.append(({"finished": True}, -1))

    fake = types.SimpleNamespace(init=lambda **kwargs: Run())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    logger = MetricsLogger(
        tmp_path, enabled=True, tensorboard=False, wandb_project="p", wandb_run_name=None, config={}
    )
    logger.log(
        {"step": 7, "tokens": 896, "train/loss": 2.0, "reweight/domain_weight_share/code": 0.5}
    )
    logger.close()
    assert calls == [
        ({"train/loss": 2.0, "reweight/domain_weight_share/code": 0.5, "tokens": 896}, 7),
        ({"finished": True}, -1),
    ]
