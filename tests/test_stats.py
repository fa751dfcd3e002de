"""experiments/stats.py: paired differences, intervals, steps to a target, the setup and the
conditions in words, on hand-made run records (no training)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lossreweight.experiments.runs import RunRecord
from lossreweight.experiments.stats import (
    ci95,
    fidelity_rows,
    regime_text,
    setup_rows,
    steps_to_reach,
    summarize,
    t975,
)


def _run(arm: str, seed: int, curve: list[float], *, batches: str = "b", **final: Any) -> RunRecord:
    """A finished run whose validation loss at steps 10, 20, ... is `curve`."""
    metrics = [{"step": 10 * (i + 1), "eval/loss": v} for i, v in enumerate(curve)]
    end = {"steps": 10 * len(curve), "tokens": 100, "eval/loss": curve[-1], **final}
    return RunRecord(
        arm, seed, Path(f"/nonexistent/{arm}-{seed}"), end, metrics, "cached", 0.0, batches
    )


def test_steps_to_reach_interpolates() -> None:
    assert steps_to_reach([10, 20, 30], [5.0, 4.0, 3.0], 3.5) == pytest.approx(25.0)
    assert steps_to_reach([10, 20, 30], [5.0, 4.0, 3.0], 5.5) == pytest.approx(10.0)
    assert steps_to_reach([10, 20, 30], [5.0, 4.0, 3.0], 2.0) is None
    assert steps_to_reach([10, 20], [5.0, 5.0], 5.0) == pytest.approx(10.0)


def test_t_interval_over_seeds() -> None:
    assert t975(1) == pytest.approx(12.706) and t975(2) == pytest.approx(4.303)
    assert t975(200) == pytest.approx(1.972, abs=1e-3)  # beyond the table: the expansion
    lo, hi = ci95([1.0, 2.0, 3.0])  # mean 2, s 1, n 3
    assert (lo, hi) == pytest.approx((2 - 4.303 / 3**0.5, 2 + 4.303 / 3**0.5))
    assert ci95([1.0]) is None and ci95([1.0, None]) is None  # a missing seed is not dropped


def test_paired_differences_and_pairing_with_another_arm() -> None:
    records = {
        "uniform": {0: _run("uniform", 0, [5.0, 4.0, 3.0]), 1: _run("uniform", 1, [5.0, 4.0, 3.2])},
        "linupper": {
            0: _run("linupper", 0, [5.0, 3.5, 2.9]),
            1: _run("linupper", 1, [5.0, 3.6, 3.3]),
        },
        "uniform@big": {0: _run("uniform@big", 0, [4.0, 3.0, 2.0])},
        "linupper@big": {0: _run("linupper@big", 0, [4.0, 2.5, 2.1])},
        "orphan": {0: _run("orphan", 0, [5.0, 4.0, 3.0]), 1: _run("orphan", 1, [5.0, 4, 3])},
    }
    pairs = {"linupper@big": "uniform@big", "orphan": "uniform@big"}  # orphan: partner lacks seed 1
    s = summarize(records, pairs=pairs)
    assert s["baseline"] == "uniform" and s["seeds"] == [0, 1] and s["same_batches"]
    d = s["runs"]["linupper"]["diff_vs_uniform"]
    assert d["val_loss"]["per_seed"] == pytest.approx([-0.1, 0.1])
    assert d["seeds_better"] == 1 and d["val_loss"]["ci95"] is not None
    # seed 0 reaches uniform's final 3.0 between steps 20 (3.5) and 30 (2.9); seed 1 never does
    st = d["steps_to_baseline_final"]
    assert st["per_seed"][0] == pytest.approx(20 + 10 * 0.5 / 0.6) and st["per_seed"][1] is None
    assert (st["reached"], st["of"]) == (1, 2)
    big = s["runs"]["linupper@big"]
    assert big["paired_with"] == "uniform@big"
    assert big["diff_vs_uniform"]["val_loss"]["per_seed"] == pytest.approx([0.1])
    assert "diff_vs_uniform" not in s["runs"]["orphan"]  # never silently paired with another
    assert s["runs"]["uniform"]["diff_vs_uniform"]["val_loss"]["per_seed"] == [0.0, 0.0]


def test_no_baseline_among_the_arms_and_batch_groups() -> None:
    records = {
        "a": {0: _run("a", 0, [3.0], batches="x")},
        "b": {0: _run("b", 0, [2.0], batches="y")},
    }
    s = summarize(records)  # the default baseline, uniform, did not run
    assert s["baseline"] is None and all("diff_vs_uniform" not in r for r in s["runs"].values())
    assert s["same_batches"] is False
    assert summarize(records, batch_groups={"a": "mix1", "b": "mix2"})["same_batches"] is True


def _row(**kw: Any) -> dict[str, Any]:
    row = {
        "arms": ["linupper"],
        "seeds": [0],
        "params": 480_000,
        "tokens": 1_250_000,
        "tokens_per_param": 2.6,
        "steps": 604,
        "seq_len": 128,
        "vocab_size": 4096,
        "burn_in_fraction": 0.05,
        "lr_warmup_fraction": 0.025,
        "temperature": "0.4",
        "burn_in_end_step": 30.0,
        "burn_in_val_loss": 6.87,
        "unigram_entropy": 6.80,
    }
    return {**row, **kw}


def test_the_conditions_in_words_and_next_to_the_paper() -> None:
    rows = [_row(), _row(arms=["uniform"], temperature="uniform weights", burn_in_val_loss=None)]
    assert regime_text(rows) == (
        "at 0.48M parameters, 2.6 tokens/param, sequence 128, a 5% burn-in ending at "
        "validation loss 6.87 (unigram entropy 6.80)"
    )
    two = [_row(), _row(params=1_400_000, burn_in_fraction=0.25, burn_in_val_loss=6.07)]
    assert regime_text(two).startswith("at 0.48M-1.4M parameters, 2.6 tokens/param")
    assert "burn-ins of 5%, 25% ending at validation loss 6.47" in regime_text(two)
    assert regime_text([]) == "conditions unknown"
    table = {r[0]: r[1:] for r in fidelity_rows({"setup": rows, "domains": ["wiki", "code"]})}
    assert table["tokens per parameter"][1:] == ["2.60", "matches"]
    assert table["burn-in"][1:] == ["5%", "matches"]
    assert table["sequence length"][1:] == ["128", "differs"]
    assert table["burn-in position"] == [
        "far below the unigram entropy",
        "validation loss 6.87 vs unigram entropy 6.80",
        "differs (before the model knows word frequencies)",
    ]
    below = fidelity_rows({"setup": [_row(burn_in_val_loss=6.2)], "domains": []})
    assert dict((r[0], r[3]) for r in below)["burn-in position"].startswith("closer")
    assert fidelity_rows({"setup": []}) == []


def test_setup_rows_group_runs_of_one_setup() -> None:
    cfg = {
        "model": {},  # no vocabulary size: parameters unknown, nothing is built
        "data": {"seq_len": 64},
        "train": {"max_steps": 100, "lr_warmup_steps": 5},
        "reweight": {"strategy": "linupper", "temperature": 0.4, "warmup_fraction": 0.05},
    }
    uniform = {**cfg, "reweight": {**cfg["reweight"], "strategy": "uniform"}}

    def run(arm: str, seed: int, config: dict[str, Any], step: float) -> RunRecord:
        r = _run(arm, seed, [3.0], burn_in={"end_step": step, "val_loss": 6.0 + seed})
        r.config = config
        return r

    records = {
        "linupper": {0: run("linupper", 0, cfg, 5), 1: run("linupper", 1, cfg, 7)},
        "uniform": {0: run("uniform", 0, uniform, 5)},
    }
    rows = setup_rows(records)
    assert [r["arms"] for r in rows] == [["linupper"], ["uniform"]]
    lin = rows[0]
    assert lin["seeds"] == [0, 1] and lin["temperature"] == "0.4" and lin["seq_len"] == 64
    assert lin["burn_in_end_step"] == pytest.approx(6.0) and lin["burn_in_val_loss"] == 6.5
    assert lin["lr_warmup_fraction"] == pytest.approx(0.05) and lin["params"] is None
    assert rows[1]["temperature"] == "uniform weights"
