"""SPEC 2, 3, 5 and 6 (single process): formulas, invariants, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import reference_weights

from lossreweight import Reweighter
from lossreweight.reweighting import (
    Cosine,
    Exponential,
    Linear,
    StepSchedule,
    available_strategies,
    compute_weights,
    get_strategy,
    make_schedule,
    register_strategy,
    stats_to_python,
)

ALL = ["uniform", "linupper", "quadratic", "extremes", "linear"]
TEMPS = [0.2, 0.4, 0.6, 1.0, 3.0, 100.0]

finite_losses = st.lists(
    st.floats(min_value=0.0, max_value=20.0, allow_nan=False, width=32), min_size=1, max_size=64
)


def _w(losses, strategy="linupper", r=0.4, **kw) -> torch.Tensor:
    return Reweighter(strategy, r, **kw).weights(torch.tensor(losses, dtype=torch.float32))


# -- the formulas against the float64 reference -----------------------------------------
@pytest.mark.parametrize("strategy", ALL)
@pytest.mark.parametrize("r", TEMPS)
def test_matches_reference_random(strategy, r):
    rng = np.random.default_rng(hash((strategy, r)) % 2**32)
    for case in range(5):
        losses = rng.gamma(2.0, 1.5, size=rng.integers(1, 50))
        if case == 1:  # ties
            losses[: len(losses) // 2] = losses[0]
        if case == 2:  # an outlier
            losses[0] = 100.0
        if case == 3:  # NaN and inf rows
            losses[::3] = np.nan
            losses[1::7] = np.inf
        want = reference_weights(losses, strategy, r)
        got = _w(losses.tolist(), strategy, r).double().numpy()
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("delta", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("strategy", ALL)
def test_matches_reference_delta(strategy, delta):
    losses = np.array([0.3, 1.2, 2.5, 2.5, 4.0, 9.0])
    got = _w(losses.tolist(), strategy, 0.7, delta=delta).double().numpy()
    np.testing.assert_allclose(got, reference_weights(losses, strategy, 0.7, delta), atol=1e-6)


@pytest.mark.parametrize("c", [1.0, 1.5, 2.0, 4.0])
@pytest.mark.parametrize("strategy", ["linupper", "extremes", "quadratic"])
def test_cap_matches_reference(strategy, c):
    rng = np.random.default_rng(7)
    losses = np.concatenate([rng.normal(2.0, 0.05, 31), [9.0]])  # right-skewed batch
    got = _w(losses.tolist(), strategy, 0.1, max_weight=c).double().numpy()
    want = reference_weights(losses, strategy, 0.1, cap=c)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got.max() <= c / len(losses) + 1e-6
    assert got.sum() == pytest.approx(1.0, abs=1e-5)


def test_cap_keeps_order_and_fixes_skewed_batch():
    losses = [2.0] * 31 + [9.0]
    w = _w(losses, "linupper", 0.4)
    assert float(w.max()) * 32 > 2.0  # the paper's bound fails on right-skewed batches
    wc = _w(losses, "linupper", 0.4, max_weight=2.0)
    assert float(wc.max()) * 32 <= 2.0 + 1e-5
    assert torch.equal(torch.argsort(w, stable=True), torch.argsort(wc, stable=True))


# -- SPEC 6 invariants (property tests) --------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(finite_losses, st.sampled_from(ALL), st.sampled_from(TEMPS))
def test_sum_to_one_nonnegative(losses, strategy, r):
    w = _w(losses, strategy, r)
    assert torch.all(w >= 0)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-5)


@settings(max_examples=40, deadline=None)
@given(finite_losses, st.sampled_from(ALL), st.randoms(use_true_random=False))
def test_permutation_equivariant(losses, strategy, rnd):
    perm = list(range(len(losses)))
    rnd.shuffle(perm)
    w = _w(losses, strategy, 0.5)
    wp = _w([losses[i] for i in perm], strategy, 0.5)
    torch.testing.assert_close(wp, w[perm], atol=1e-6, rtol=0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0.0, 10.0, width=32), min_size=2, max_size=32, unique=True),
    st.sampled_from(ALL),
    st.floats(0.5, 4.0),
    st.floats(-3.0, 3.0),
)
def test_affine_invariant(losses, strategy, a, b):
    if max(losses) - min(losses) < 1e-2:  # keep away from the eps clamp
        losses = [x * 10 for x in losses] + [0.0, 5.0]
    w = _w(losses, strategy, 0.5)
    wa = _w([a * x + b for x in losses], strategy, 0.5)
    torch.testing.assert_close(wa, w, atol=1e-5, rtol=1e-4)


@settings(max_examples=40, deadline=None)
@given(
    finite_losses, st.sampled_from(["linupper", "extremes", "quadratic"]), st.sampled_from(TEMPS)
)
def test_ratio_bound(losses, strategy, r):
    w = _w(losses, strategy, r)
    bound = math.exp(1.0 / r)  # delta = 1: exp(delta/r) for linupper/extremes, exp(1/r) quadratic
    assert float(w.max() / w.min()) <= bound * (1 + 1e-4)


@settings(max_examples=40, deadline=None)
@given(finite_losses)
def test_uniform_and_infinite_temperature(losses):
    m = len(losses)
    torch.testing.assert_close(_w(losses, "uniform", 0.2), torch.full((m,), 1 / m))
    torch.testing.assert_close(
        _w(losses, "linupper", 1e6), torch.full((m,), 1 / m)
    )  # the largest r


@settings(max_examples=40, deadline=None)
@given(finite_losses)
def test_linupper_monotone_and_flat_at_top(losses):
    t = torch.tensor(losses)
    w = _w(losses, "linupper", 0.3)
    order = torch.argsort(t, stable=True)
    assert torch.all(torch.diff(w[order]) >= -1e-7)
    lo, hi = t.min(), t.max()
    if hi - lo > 1e-3:
        top = t >= (lo + hi) / 2 + 1e-4  # x >= 0
        if top.any():
            assert float(w[top].max() - w[top].min()) <= 1e-6


# -- invalid samples -----------------------------------------------------------------------
def test_invalid_samples_get_zero_and_are_counted():
    rw = Reweighter("linupper", 0.4)
    losses = torch.tensor([1.0, float("nan"), 2.0, float("inf"), 3.0])
    w, stats = rw.weights_and_stats(losses)
    assert w[1] == 0 and w[3] == 0
    assert float(w.sum()) == pytest.approx(1.0)
    s = stats_to_python(stats)
    assert s["num_invalid"] == 2 and s["num_samples"] == 3 and s["all_invalid"] == 0.0


def test_all_invalid_gives_zero_weights_and_flag():
    rw = Reweighter("linupper", 0.4)
    losses = torch.tensor([float("nan"), float("inf")], requires_grad=True)
    w, stats = rw.weights_and_stats(losses.detach())
    assert torch.equal(w, torch.zeros(2))
    assert stats_to_python(stats)["all_invalid"] == 1.0
    loss = rw.weighted_loss(losses)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.equal(losses.grad, torch.zeros(2))


def test_weighted_loss_sends_no_gradient_to_invalid_rows():
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    losses = torch.stack([x[0] ** 2, x[1] * float("inf"), x[2] ** 2])
    losses.retain_grad()
    loss = Reweighter("linupper", 0.5).weighted_loss(losses)
    assert torch.isfinite(loss)
    loss.backward()
    # The loss row gets exactly zero gradient (what happens upstream of a NaN is the model's).
    assert losses.grad[1] == 0 and torch.all(torch.isfinite(losses.grad))


def test_weighted_loss_is_weighted_sum_and_detached():
    losses = torch.tensor([0.5, 1.0, 4.0], requires_grad=True)
    rw = Reweighter("linupper", 0.4)
    w = rw.weights(losses.detach())
    loss = rw.weighted_loss(losses)
    assert float(loss.detach()) == pytest.approx(float((w * losses.detach()).sum()))
    loss.backward()
    torch.testing.assert_close(losses.grad, w)  # no gradient through the weights
    half = rw.weighted_loss(losses, accumulation_steps=2)
    assert float(half.detach()) == pytest.approx(float(loss.detach()) / 2)


def test_uniform_equals_mean_loss():
    losses = torch.rand(16)
    assert float(Reweighter("uniform").weighted_loss(losses)) == pytest.approx(float(losses.mean()))


# -- warm-up and schedules ---------------------------------------------------------------
def test_warmup_is_uniform_then_reweights():
    rw = Reweighter("linupper", 0.2, warmup_steps=3)
    losses = torch.tensor([1.0, 2.0, 5.0])
    torch.testing.assert_close(rw.weights(losses, step=2), torch.full((3,), 1 / 3))
    assert not torch.allclose(rw.weights(losses, step=3), torch.full((3,), 1 / 3))


def test_schedules_are_pure_functions_of_step():
    assert StepSchedule(r=0.4, r_warm=100.0, switch_step=2000)(1999) == 100.0
    assert StepSchedule(r=0.4, r_warm=100.0, switch_step=2000)(2000) == 0.4
    lin = Linear(r_start=1.0, r_end=0.2, span=100)
    assert lin(0) == 1.0 and lin(50) == pytest.approx(0.6) and lin(500) == pytest.approx(0.2)
    cos = Cosine(r_start=1.0, r_end=0.2, span=100)
    assert (
        cos(0) == pytest.approx(1.0)
        and cos(50) == pytest.approx(0.6)
        and cos(100) == pytest.approx(0.2)
    )
    exp = Exponential(r_start=1.0, r_end=0.01, span=100)
    assert exp(50) == pytest.approx(0.1)
    assert make_schedule({"kind": "cosine", "r_start": 1.0, "r_end": 0.2, "span": 100}) == cos
    rw = Reweighter("linupper", {"kind": "linear", "r_start": 1.0, "r_end": 0.2, "span": 10})
    _, stats = rw.weights_and_stats(torch.tensor([1.0, 2.0]), step=5)
    assert stats_to_python(stats)["temperature"] == pytest.approx(0.6)


# -- statistics --------------------------------------------------------------------------
def test_stats_against_definitions():
    losses = torch.tensor([0.5, 1.0, 1.5, 4.0, float("nan")])
    doms = torch.tensor([0, 0, 1, 1, 1])
    rw = Reweighter("linupper", 0.4, num_domains=2)
    w, stats = rw.weights_and_stats(losses, domain_ids=doms)
    w, s = w.double(), stats_to_python(stats)
    wv = w[:4]
    m = 4
    assert s["num_samples"] == m and s["num_invalid"] == 1
    assert s["max_weight_x_m"] == pytest.approx(float(wv.max() * m), rel=1e-5)
    assert s["min_weight_x_m"] == pytest.approx(float(wv.min() * m), rel=1e-5)
    assert s["ess_fraction"] == pytest.approx(float(1 / (wv**2).sum() / m), rel=1e-5)
    ent = float(-(wv * wv.log()).sum() / math.log(m))
    assert s["entropy_fraction"] == pytest.approx(ent, rel=1e-5)
    assert s["frac_above_2_over_m"] == pytest.approx(float((wv > 2 / m).double().mean()))
    corr = np.corrcoef(losses[:4].numpy(), wv.numpy())[0, 1]
    assert s["weight_loss_corr"] == pytest.approx(corr, abs=1e-5)
    assert s["domain_weight_share"] == pytest.approx(
        [float(wv[:2].sum()), float(wv[2:].sum())], abs=1e-6
    )
    assert s["domain_sample_share"] == pytest.approx([0.5, 0.5])


# -- custom strategies and bad input -----------------------------------------------------
def test_register_custom_strategy():
    register_strategy("cubic_test", lambda x, d: x**3, overwrite=True)
    assert "cubic_test" in available_strategies()
    w = _w([1.0, 2.0, 3.0], "cubic_test", 1.0)
    e = np.exp(np.array([-1.0, 0.0, 1.0]) - 1.0)
    np.testing.assert_allclose(w.numpy(), e / e.sum(), atol=1e-6)
    w2 = Reweighter(lambda x, d: -x, 1.0).weights(torch.tensor([1.0, 2.0]))
    assert w2[0] > w2[1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"strategy": "bogus"},
            r"valid strategies: .*extremes, linear, linupper, quadratic, uniform",
        ),
        ({"strategy": "upper"}, "ambiguous"),
        ({"strategy": "mid"}, "quadratic"),
        ({"temperature": 0.0}, r"temperature=0.0 is outside \[0.001, 1e\+06\]"),
        ({"temperature": -1.0}, "temperature=-1.0 is outside"),
        ({"temperature": {"kind": "sideways"}}, "unknown temperature schedule"),
        ({"delta": 0.0}, r"delta=0.0 is outside"),
        ({"max_weight": 0.5}, "max_weight must be a finite number >= 1"),
        ({"scope": "global"}, "scope must be"),
        ({"warmup_steps": -1}, "warmup_steps"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Reweighter(**kwargs)


def test_bad_losses_shape():
    with pytest.raises(ValueError, match="losses must be 1-D"):
        Reweighter().weights(torch.ones(2, 3))
    with pytest.raises(ValueError, match="weights shape"):
        Reweighter().weighted_loss(torch.ones(3), weights=torch.ones(2))


def test_get_strategy_and_state_dict_roundtrip():
    assert get_strategy("linupper")(torch.tensor([0.5]), 1.0).item() == 1.0
    rw = Reweighter("linupper", 0.4)
    rw.load_state_dict(rw.state_dict())
    with pytest.raises(ValueError, match="trained with reweighting"):
        Reweighter("quadratic", 0.4).load_state_dict(rw.state_dict())


def test_compute_weights_dtype_and_device_agnostic():
    w = compute_weights(
        torch.tensor([1.0, 2.0], dtype=torch.bfloat16),
        strategy=get_strategy("linupper"),
        temperature=0.5,
    )
    assert w.dtype == torch.float32
