"""Evaluation on validation data (lossreweight.train.evaluate): per-domain losses under the
metric names, the evaluator's cadence; a run evaluated from its directory is tested end to
end in test_train.py and test_eval_downstream.py."""

from __future__ import annotations

import json
import math

import pytest
import torch
from train_utils import TINY_OVERRIDES

from lossreweight.cli import main
from lossreweight.train import load_config, train
from lossreweight.train.evaluate import Evaluator
from lossreweight.train.runtime import Runtime


# -- the evaluator --------------------------------------------------------------------------------
class _FixedLoss(torch.nn.Module):
    """Per-sample loss = the sample's first token id (a known answer per domain)."""

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return input_ids[:, 0].to(torch.float32)


def test_evaluator_cadence_and_names() -> None:
    rt = Runtime(torch.device("cpu"), 0, 0, 1, None)
    batch = {
        "input_ids": torch.tensor([[1, 0, 0], [3, 0, 0], [2, 0, 0]]),
        "domain_ids": torch.tensor([0, 0, 1]),
    }
    ev = Evaluator(_FixedLoss(), [batch], ["code", "wiki"], rt, every=5)
    assert [s for s in range(1, 12) if ev.due(s)] == [5, 10] and ev.due(7, last=True)
    assert Evaluator(_FixedLoss(), [], [], rt, every=0).due(5) is False
    result = ev.run()
    # The result is written under the metric names, as final.json and metrics.jsonl keep it.
    assert ev.last is result and result == {
        "eval/loss": 2.0,
        "eval/ppl": pytest.approx(math.exp(2.0)),
        "eval/domain_avg_loss": 2.0,
        "eval/worst_domain_loss": 2.0,
        "eval/code/loss": 2.0,
        "eval/wiki/loss": 2.0,
        "eval/tokens": 6,
    }


def test_eval_command(tmp_path, capsys):
    """`lossreweight eval RUN --json` scores the newest checkpoint under the names final.json
    keeps; without --json, a table per domain."""
    train(load_config("tiny", TINY_OVERRIDES), tmp_path / "run")
    assert main(["eval", str(tmp_path / "run"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert res["step"] == 6
    assert res["eval/loss"] == pytest.approx(final["eval/loss"], rel=1e-5)
    assert {k for k in res if k.startswith("eval/")} == {k for k in final if k.startswith("eval/")}
    assert res["worst_domain"] in {k.split("/")[1] for k in final if k.count("/") == 2}
    assert main(["eval", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "checkpoint" in out and "domain avg" in out
