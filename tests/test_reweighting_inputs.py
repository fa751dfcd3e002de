"""Library misuse (issue 13.5/13.6): every bad input is a ValueError/TypeError naming the
argument and the fix, never a torch internal error or a NaN. And the one combination rule for
statistics (issue 14.2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lossreweight import Reweighter
from lossreweight.reweighting import (
    TEMPERATURE_RANGE,
    Constant,
    Cosine,
    Exponential,
    Linear,
    StepSchedule,
    combine_stats,
    make_schedule,
    stats_to_python,
)

LOSSES = torch.tensor([1.0, 2.0, 4.0])


# -- constructor arguments ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_domains": -1}, ValueError, r"num_domains must be an integer >= 0"),
        ({"num_domains": 2.5}, ValueError, r"num_domains must be an integer"),
        ({"num_domains": True}, ValueError, r"num_domains must be an integer"),
        ({"max_weight": True}, ValueError, r"max_weight must be a finite number >= 1 .* got True"),
        ({"max_weight": math.inf}, ValueError, r"or None for no cap"),
        ({"max_weight": math.nan}, ValueError, r"max_weight"),
        ({"max_weight": "2"}, ValueError, r"max_weight"),
        ({"delta": True}, TypeError, r"delta must be a number, got True"),
        ({"delta": math.nan}, ValueError, r"delta=nan is outside \[0.001, 1000\]"),
        ({"delta": math.inf}, ValueError, r"delta=inf is outside"),
        ({"delta": -1.0}, ValueError, r"delta=-1.0 is outside"),
        ({"delta": 1e308}, ValueError, r"delta=1e\+308 is outside"),
        ({"warmup_steps": 1.5}, ValueError, r"warmup_steps must be an integer >= 0"),
        ({"warmup_steps": True}, ValueError, r"warmup_steps must be an integer >= 0"),
        ({"max_batch_size": 0}, ValueError, r"max_batch_size must be an integer >= 1 or None"),
        ({"max_batch_size": 2.5}, ValueError, r"max_batch_size"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Reweighter("linupper", **kwargs)


def test_numpy_integers_are_integers():
    rw = Reweighter("linupper", np.float32(0.5), warmup_steps=np.int64(2), num_domains=np.int64(2))
    assert rw.warmup_steps == 2 and rw.num_domains == 2
    assert rw.weights(LOSSES, step=np.int64(3)).sum().item() == pytest.approx(1.0)


# -- temperatures: numbers and every schedule ----------------------------------------------
TOO_SMALL = [0.0, -1.0, 1e-4, 1e-320]
TOO_LARGE = [1e7, 1e308, math.inf]


@pytest.mark.parametrize("r", [*TOO_SMALL, *TOO_LARGE, math.nan])
def test_temperature_out_of_range_is_refused(r):
    with pytest.raises(
        ValueError, match=r"temperature=.* is outside \[0.001, 1e\+06\].*pick r in range"
    ):
        Reweighter("linupper", r)


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "constant", "r": 1e308},
        {"kind": "step", "r": 0.4, "r_warm": 1e-5},
        {"kind": "step", "r": 1e9},
        {"kind": "linear", "r_start": 100.0, "r_end": 1e-4, "span": 10},
        {"kind": "cosine", "r_start": 1e308, "r_end": 1.0, "span": 10},
        {"kind": "exponential", "r_start": 1.0, "r_end": 0.0, "span": 10},
    ],
)
def test_schedule_temperatures_out_of_range_are_refused(spec):
    with pytest.raises(ValueError, match=r"is outside \[0.001, 1e\+06\]"):
        make_schedule(spec)


def test_temperature_bounds_are_usable_and_the_extremes_behave():
    lo, hi = TEMPERATURE_RANGE
    losses = torch.tensor([1.0, 1.5, 2.0, 9.0])
    sharp = Reweighter("linupper", lo).weights(losses)
    flat = Reweighter("linupper", hi).weights(losses)
    assert torch.all(torch.isfinite(sharp)) and sharp.sum().item() == pytest.approx(1.0)
    assert sharp[-1].item() > 0.99  # collapses onto the highest loss, no NaN
    torch.testing.assert_close(flat, torch.full((4,), 0.25))
    for cls in (Linear, Cosine, Exponential):  # every step of an in-range schedule is in range
        s = cls(r_start=hi, r_end=lo, span=7)
        assert all(lo <= s(t) <= hi * (1 + 1e-12) for t in range(10))


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        (
            {"kind": "linear", "r_start": 1.0, "r_end": 0.1, "span": 10, "steps": 3},
            ValueError,
            r"unknown key 'steps' for temperature schedule 'linear'; valid: kind, r_start, r_end, "
            r"span, start_step",
        ),
        (
            {"kind": "linear", "r_start": 1.0},
            ValueError,
            r"schedule 'linear' needs r_end, span; valid keys: kind",
        ),
        ({"kind": "sideways"}, ValueError, r"valid: constant, step, linear, cosine, exponential"),
        ({"kind": ["step"]}, ValueError, r"unknown temperature schedule"),
        (
            {"kind": "linear", "r_start": "1", "r_end": 0.1, "span": 10},
            TypeError,
            r"r_start must be a number",
        ),
        (
            {"kind": "linear", "r_start": 1.0, "r_end": 0.1, "span": 2.5},
            ValueError,
            r"span must be an integer",
        ),
        (
            {"kind": "linear", "r_start": 1.0, "r_end": 0.1, "span": 0},
            ValueError,
            r"span must be an integer",
        ),
        (
            {"kind": "cosine", "r_start": 1.0, "r_end": 0.1, "span": 5, "start_step": -1},
            ValueError,
            r"start_step",
        ),
        (
            {"kind": "step", "r": 0.4, "switch_step": 1.5},
            ValueError,
            r"switch_step must be an integer >= 0",
        ),
        ({"kind": "constant", "r": True}, TypeError, r"temperature must be a number, got True"),
    ],
)
def test_bad_schedules(spec, error, match):
    with pytest.raises(error, match=match):
        make_schedule(spec)


def test_schedule_objects_are_checked_too():
    with pytest.raises(ValueError, match="outside"):
        Constant(1e308)
    with pytest.raises(ValueError, match="r_warm"):
        StepSchedule(r=0.4, r_warm=0.0)


# -- call arguments ---------------------------------------------------------------------------
@pytest.mark.parametrize("step", [-1, math.nan, 2.5, True, "3"])
def test_bad_step(step):
    rw = Reweighter("linupper", 0.5)
    with pytest.raises(ValueError, match=r"step must be an integer >= 0 \(the optimizer step"):
        rw.weights(LOSSES, step=step)
    with pytest.raises(ValueError, match=r"step must be an integer >= 0"):
        rw.reweight(LOSSES, step=step)


def test_tensor_step_is_refused_without_reading_it():
    with pytest.raises(TypeError, match=r"step must be a Python int .* pass int\(step\)"):
        Reweighter("linupper", 0.5).weights(LOSSES, step=torch.tensor(3))


@pytest.mark.parametrize("a", [0, -2, 1.5, math.nan, 2.0, True])
def test_bad_accumulation_steps(a):
    rw = Reweighter("linupper", 0.5)
    with pytest.raises(ValueError, match=r"accumulation_steps must be an integer >= 1"):
        rw.reweight(LOSSES, accumulation_steps=a)
    with pytest.raises(ValueError, match=r"accumulation_steps must be an integer >= 1"):
        rw.weighted_loss(LOSSES, accumulation_steps=a)


def test_empty_losses():
    rw = Reweighter("linupper", 0.5)
    for call in (rw.weights, rw.reweight, rw.weighted_loss):
        with pytest.raises(
            ValueError, match="losses is empty: pass the per-sample losses of at least one sample"
        ):
            call(torch.empty(0))


def test_numpy_and_lists_are_refused_with_the_conversion():
    rw = Reweighter("linupper", 0.5)
    with pytest.raises(
        TypeError,
        match=r"losses must be a torch.Tensor, got numpy.ndarray; .*torch.from_numpy\(losses\)",
    ):
        rw.weights(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match=r"torch.as_tensor\(losses\)"):
        rw.reweight([1.0, 2.0])
    with pytest.raises(
        TypeError, match=r"domain_ids must be a torch.Tensor, got numpy.ndarray; .*torch.from_numpy"
    ):
        Reweighter("linupper", 0.5, num_domains=2).weights(LOSSES, domain_ids=np.array([0, 1, 1]))
    with pytest.raises(TypeError, match=r"weights must be a torch.Tensor"):
        rw.weighted_loss(LOSSES, weights=np.full(3, 1 / 3))


def test_integer_losses_are_refused():
    with pytest.raises(
        TypeError,
        match=r"losses must be a floating-point tensor, got torch.int64; use losses.float\(\)",
    ):
        Reweighter().weights(torch.tensor([1, 2, 3]))


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (torch.tensor([0.5, 0.7, -0.2]), "a negative weight"),
        (torch.tensor([0.5, float("nan"), 0.5]), "NaN"),
        (torch.tensor([0.5, float("inf"), 0.5]), "inf"),
    ],
)
def test_bad_weights(weights, match):
    with pytest.raises(ValueError, match=rf"weights must be finite and >= 0 \(got {match}\)"):
        Reweighter("linupper", 0.5).weighted_loss(LOSSES, weights=weights)


def test_integer_weights_are_refused():
    with pytest.raises(TypeError, match="weights must be a floating-point tensor"):
        Reweighter().weighted_loss(LOSSES, weights=torch.tensor([0, 1, 0]))


@pytest.mark.parametrize("bad", [2, -1, 7])
def test_out_of_range_domain_ids_on_cpu(bad):
    rw = Reweighter("linupper", 0.5, num_domains=2)
    with pytest.raises(
        ValueError, match=rf"domain_ids holds {bad}, outside \[0, 2\) for num_domains=2; "
    ):
        rw.weights_and_stats(LOSSES, domain_ids=torch.tensor([0, bad, 1]))


def test_domain_ids_dtype_and_shape():
    rw = Reweighter("linupper", 0.5, num_domains=2)
    with pytest.raises(TypeError, match=r"domain_ids must be an integer tensor, got torch.float32"):
        rw.weights(LOSSES, domain_ids=torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"domain_ids shape \(2,\) must match losses \(3,\)"):
        rw.weights(LOSSES, domain_ids=torch.tensor([0, 1]))


def test_out_of_range_ids_off_cpu_go_to_the_overflow_bin():
    """Off CPU the range is not checked (it would synchronise): such samples are left out of
    the shares. The statistics function is the same on every device; call it directly."""
    from lossreweight.reweighting.weights import weight_stats

    w = torch.tensor([0.25, 0.25, 0.25, 0.25])
    valid = torch.ones(4, dtype=torch.bool)
    stats = weight_stats(
        w, LOSSES.repeat(2)[:4], valid, 1.0, domain_ids=torch.tensor([0, 5, -3, 1]), num_domains=2
    )
    s = stats_to_python(stats)
    assert s["domain_weight_share"] == pytest.approx([0.25, 0.25])
    assert s["domain_sample_share"] == pytest.approx([0.25, 0.25])


# -- custom strategies ----------------------------------------------------------------------
def test_custom_strategy_wrong_shape():
    rw = Reweighter(lambda x, d: x.sum(), 0.5)
    with pytest.raises(
        ValueError, match=r"strategy '<lambda>' returned scores of shape \(\) for x of shape \(3,\)"
    ):
        rw.weights(LOSSES)
    with pytest.raises(TypeError, match=r"strategy 'listy' returned list"):
        Reweighter(_named("listy", lambda x, d: x.tolist()), 0.5).weights(LOSSES)


def test_custom_strategy_nan_is_an_error_on_cpu():
    rw = Reweighter(_named("sqrt", lambda x, d: torch.sqrt(x)), 0.5)  # NaN for x < 0
    with pytest.raises(
        ValueError, match=r"strategy 'sqrt' returned a non-finite score for a finite loss"
    ):
        rw.weights(LOSSES)


def test_non_finite_scores_make_samples_invalid_without_the_check(monkeypatch):
    """The path off CPU (no value check there): the sample gets weight 0 and is counted."""
    from lossreweight.reweighting import reweighter
    from lossreweight.reweighting.weights import scope_weights

    w, valid = scope_weights(
        LOSSES, strategy=lambda x, d: torch.sqrt(x), temperature=0.5, check=False
    )
    assert torch.equal(valid, torch.tensor([False, False, True]))  # x = -1, -1/3, 1
    assert torch.equal(w, torch.tensor([0.0, 0.0, 1.0]))
    monkeypatch.setattr(reweighter, "is_builtin", lambda fn: True)  # as if not on CPU
    w, stats = Reweighter(lambda x, d: torch.sqrt(x + 0.5), 0.5).weights_and_stats(LOSSES)
    s = stats_to_python(stats)
    assert w[0] == 0 and s["num_invalid"] == 1 and s["num_samples"] == 2
    assert w.sum().item() == pytest.approx(1.0)


def _named(name, fn):
    fn.__name__ = name
    return fn


# -- combine_stats: the one rule (issue 14.2) -------------------------------------------------
def _micro_stats(n_micro=4, nan_at=(1, 0)):
    rw = Reweighter("linupper", 0.5, num_domains=2)
    g = torch.Generator().manual_seed(0)
    parts = []
    for k in range(n_micro):
        losses = torch.rand(4, generator=g) * 3
        if (k, 0) == (nan_at[0], 0):
            losses[nan_at[1]] = float("nan")
        parts.append(rw.weights_and_stats(losses, step=3, domain_ids=torch.tensor([0, 1, 0, 1]))[1])
    return parts


def test_combine_counts_add_and_means_weight_by_samples():
    parts = _micro_stats()
    s = stats_to_python(combine_stats(parts))
    py = [stats_to_python(p) for p in parts]
    assert s["num_invalid"] == 1 and s["num_samples"] == 15 and s["all_invalid"] == 0
    n = [p["num_samples"] for p in py]
    for key in ("mean_loss", "ess_fraction", "weighted_loss", "temperature"):
        assert s[key] == pytest.approx(
            sum(p[key] * k for p, k in zip(py, n, strict=True)) / 15, rel=1e-6
        )


def test_combine_is_associative_so_loggers_can_fold():
    parts = _micro_stats(6)
    at_once = stats_to_python(combine_stats(parts))
    folded = combine_stats(parts[:2])
    for p in parts[2:]:
        folded = combine_stats([folded, p])
    folded = stats_to_python(folded)
    for key, value in at_once.items():
        assert folded[key] == pytest.approx(value, rel=1e-6), key


def test_combine_empty_scopes_keep_their_temperature():
    rw = Reweighter("linupper", 0.5)
    empty = rw.weights_and_stats(torch.tensor([float("nan")]))[1]
    s = stats_to_python(combine_stats([empty, empty]))
    assert (
        s["all_invalid"] == 2 and s["num_samples"] == 0 and s["temperature"] == pytest.approx(0.5)
    )


def test_combine_keeps_only_keys_every_part_has():
    rw = Reweighter("linupper", 0.5, num_domains=2)
    a = rw.weights_and_stats(LOSSES, domain_ids=torch.tensor([0, 1, 1]))[1]
    b = rw.weights_and_stats(LOSSES)[1]
    out = combine_stats([a, b])
    assert "domain_weight_share" not in out and out["num_samples"].item() == 6


def test_value_checks_stay_out_of_vmap():
    """Under torch.func.vmap values are not concrete: the checks must not read them."""
    rw = Reweighter(lambda x, d: x**3, 0.5)

    def one(losses):
        w = rw.weights(losses.detach(), step=1)
        return rw.weighted_loss(losses, weights=w)

    out = torch.func.vmap(one)(torch.rand(3, 5))
    assert out.shape == (3,) and torch.all(torch.isfinite(out))
