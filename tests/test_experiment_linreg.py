"""The linreg toy study (paper Figure 7): the quick path end to end, and the weighted SGD step."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from study_runs import quick_run

from lossreweight.experiments.studies.linreg.analysis import ArmStats, faster, steps_to_target
from lossreweight.experiments.studies.linreg.simulation import (
    STRATEGIES,
    LinregConfig,
    batch_order,
    make_problem,
    sgd_step,
)
from lossreweight.reweighting import Reweighter

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# One xdist worker runs the whole module, so the module-scoped quick study runs once.
pytestmark = pytest.mark.xdist_group("linreg")


# -- the quick study, run once for the module ---------------------------------------------
@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out, summary, _ = quick_run(tmp_path_factory, "linreg")
    return out, summary


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def test_summary_schema_and_finite_numbers(quick: tuple[Path, dict[str, Any]]) -> None:
    _, s = quick
    assert s["study"] == "linreg" and s["quick"] is True
    assert s["seeds"] == [0, 1]
    assert 0 < s["target"] < 1
    assert set(s["steps_to_target"]) == set(STRATEGIES)
    for name in STRATEGIES:
        # In the main setting every strategy reaches the target on every quick seed.
        assert _is_number(s["steps_to_target"][name]) and s["steps_to_target"][name] > 0
        assert _is_number(s["steps_to_target_std"][name])
        assert len(s["steps_to_target_per_seed"][name]) == len(s["seeds"])
        assert s["reached"][name] == len(s["seeds"]) and s["diverged"][name] == 0
        final = s["final_test_loss"][name]
        assert _is_number(final["mean"]) and _is_number(final["std"])
        assert all(_is_number(v) for v in final["per_seed"])
    assert s["speedup_vs_uniform"]["uniform"] == pytest.approx(1.0)
    assert s["linupper_fastest"] in (True, False, None)
    assert s["settings"]["n_train"] > s["settings"]["dim"]  # the interpolation regime
    for kind in ("lr", "temperature"):
        blocks = s["ablations"][kind]
        assert blocks, kind
        for block in blocks.values():
            assert set(block["steps_to_target"]) == set(STRATEGIES)
            for name, v in block["steps_to_target"].items():
                # A mean is a finite number, or None exactly when some seed missed the target.
                missed = None in block["steps_to_target_per_seed"][name]
                assert (v is None) == missed and (v is None or _is_number(v))
    assert len(s["ablations"]["lr"]) >= 3
    assert all(b["temperature"] < 1 for b in s["ablations"]["temperature"].values())
    assert set(s["ablations"]["lr_best"]) == set(STRATEGIES)


def test_same_minibatch_order_for_every_strategy(quick: tuple[Path, dict[str, Any]]) -> None:
    _, s = quick
    per_seed = s["batch_checksums"]
    assert list(per_seed) == [str(seed) for seed in s["seeds"]]
    for row in per_seed.values():
        assert set(row) == set(STRATEGIES)
        assert len(set(row.values())) == 1  # one order shared by all strategies of a seed
    assert len({next(iter(row.values())) for row in per_seed.values()}) == len(per_seed)
    assert s["batch_order_shared_by_all_arms"] is True  # ablation arms too


def test_plots_and_html_written(quick: tuple[Path, dict[str, Any]]) -> None:
    out, s = quick
    pngs = [v for k, v in s["files"].items() if v.endswith(".png")]
    assert len(pngs) >= 4
    for name in pngs:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    page = (out / s["files"]["html"]).read_text()
    assert page.startswith("<!doctype html>")
    for name in pngs:
        assert f'src="{name}"' in page


# -- the weighted SGD step against a hand computation -------------------------------------
HAND_SCORES = {
    "uniform": lambda x: np.zeros_like(x),
    "linupper": lambda x: np.minimum(x + 1.0, 1.0),
    "quadratic": lambda x: 1.0 - x**2,
    "extremes": lambda x: np.abs(x),
}


def hand_step(theta, x, y, lr, strategy, r):  # noqa: ANN001, ANN201 - plain numpy on purpose
    """theta - lr * sum_i w_i (x_i . theta - y_i) x_i, with w from SPEC 2 written out."""
    res = x @ theta - y
    loss = 0.5 * res**2
    lo, hi = loss.min(), loss.max()
    xn = (2 * loss - hi - lo) / max(hi - lo, 1e-6)
    s = HAND_SCORES[strategy](xn)
    e = np.exp((s - s.max()) / r)
    w = e / e.sum()
    return theta - lr * (x.T @ (w * res)), w


def _batch(seed: int, b: int = 8, d: int = 5) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = (
        torch.randn(b, d, generator=g, dtype=torch.float64)
        * torch.linspace(0.2, 2.0, b)[:, None].double()
    )
    y = torch.randn(b, generator=g, dtype=torch.float64)
    theta = torch.randn(d, generator=g, dtype=torch.float64)
    return theta, x, y


@pytest.mark.parametrize("strategy", sorted(HAND_SCORES))
@pytest.mark.parametrize("r", [1.0, 0.2])
def test_weighted_sgd_step_equals_hand_computed(strategy: str, r: float) -> None:
    theta, x, y = _batch(0)
    lr = 0.05
    arms = [(Reweighter(strategy, r), torch.tensor([0]))]
    new, w = sgd_step(
        theta[None], x[None], y[None], torch.tensor([lr], dtype=torch.float64), arms, 0
    )
    want, want_w = hand_step(theta.numpy(), x.numpy(), y.numpy(), lr, strategy, r)
    np.testing.assert_allclose(w[0].numpy(), want_w, rtol=1e-5, atol=1e-7)  # weights in float32
    np.testing.assert_allclose(new[0].numpy(), want, rtol=1e-5, atol=1e-7)
    assert not torch.equal(new[0], theta)


def test_vectorised_runs_do_not_mix() -> None:
    """Three runs in one call (two arms, three lrs) equal three separate single-run steps."""
    batches = [_batch(s) for s in (1, 2, 3)]
    theta = torch.stack([b[0] for b in batches])
    x = torch.stack([b[1] for b in batches])
    y = torch.stack([b[2] for b in batches])
    lr = torch.tensor([0.01, 0.1, 0.3], dtype=torch.float64)
    lin, uni = Reweighter("linupper", 0.5), Reweighter("uniform")
    new, _ = sgd_step(theta, x, y, lr, [(lin, torch.tensor([0, 2])), (uni, torch.tensor([1]))], 0)
    for i, (strategy, r) in enumerate([("linupper", 0.5), ("uniform", 1.0), ("linupper", 0.5)]):
        want, _ = hand_step(theta[i].numpy(), x[i].numpy(), y[i].numpy(), float(lr[i]), strategy, r)
        np.testing.assert_allclose(new[i].numpy(), want, rtol=1e-5, atol=1e-7)


# -- small pieces ---------------------------------------------------------------------------
def test_batch_order_is_epochwise_and_reproducible() -> None:
    a = batch_order(22, 4, 15, torch.Generator().manual_seed(3))
    b = batch_order(22, 4, 15, torch.Generator().manual_seed(3))
    assert a.shape == (15, 4) and torch.equal(a, b)
    for epoch in a.view(3, 20):  # 5 full batches per epoch (2 left over): no repeats in one
        assert len(set(epoch.tolist())) == 20


def test_problem_interpolates_every_training_sample() -> None:
    cfg = LinregConfig(steps=5)
    p = make_problem(cfg, [7])
    assert p.x.shape == (1, cfg.n_train, cfg.dim) and cfg.n_train > cfg.dim
    assert torch.allclose(p.x[0] @ p.theta_star[0], p.y[0])  # no noise: theta* fits all
    counts = torch.bincount(p.group_of[0])
    assert counts.tolist() == [round(g.fraction * cfg.n_train) for g in cfg.groups]


def test_steps_to_target_and_censoring() -> None:
    rel = torch.tensor([[1.0, 0.5, 0.05, 0.001], [1.0, 0.9, 0.8, 0.7]])
    assert steps_to_target(rel, 0.1) == [2, None]

    def stats(per_seed: list[int | None], budget: int = 100) -> ArmStats:
        done = [s for s in per_seed if s is not None]
        mean = sum(done) / len(done) if len(done) == len(per_seed) else None
        lower = sum(s if s is not None else budget for s in per_seed) / len(per_seed)
        return ArmStats(per_seed, mean, 0.0, lower, len(done), 0, [], 0.0, 1.0)

    assert faster(stats([10, 20]), stats([30, 40])) is True
    assert faster(stats([30, 40]), stats([10, 20])) is False
    assert faster(stats([10, 20]), stats([None, 40])) is True  # 15 < lower bound 70
    assert faster(stats([90, 95]), stats([None, 10])) is None  # 92.5 vs >= 55: cannot tell
    assert faster(stats([None, None]), stats([50, 50])) is False


def test_page_opens_with_verdict_and_setup(quick: tuple[Path, dict[str, Any]]) -> None:
    out, s = quick
    assert (
        s["verdict"].endswith(".") and "uniform" in s["verdict"] and "95% interval" in s["verdict"]
    )
    for arm, d in s["paired_steps_vs_uniform"].items():
        per = [
            a - b
            for a, b in zip(
                s["steps_to_target_per_seed"][arm],
                s["steps_to_target_per_seed"]["uniform"],
                strict=True,
            )
        ]
        assert d["per_seed"] == per and d["mean"] == pytest.approx(sum(per) / len(per))
        assert d["ci95"][0] <= d["mean"] <= d["ci95"][1]
    page = (out / "index.html").read_text()
    headings = [h.split("</h2>")[0] for h in page.split("<h2>")[1:]]
    assert headings[:2] == ["Verdict", "Setup"]
    # written as every study's page is: summary.json carries the sections for `report`
    assert [x["heading"] for x in s["report"]["sections"]] == headings
