"""The integrations' statistics plumbing: the one combination rule, bounded folding, flat names."""

from __future__ import annotations

import math

import pytest
import torch

from lossreweight import Reweighter
from lossreweight.integrations import _stats
from lossreweight.integrations._stats import StatsAccumulator, flatten, logged_losses
from lossreweight.reweighting import combine_stats, stats_to_python


def _parts(n: int) -> list[dict[str, torch.Tensor]]:
    rw = Reweighter("linupper", 0.5, num_domains=2)
    g = torch.Generator().manual_seed(0)
    out = []
    for k in range(n):
        losses = torch.rand(3 + k % 2, generator=g) * 4
        if k == 2:
            losses[0] = float("nan")
        doms = torch.arange(losses.numel()) % 2
        out.append(rw.weights_and_stats(losses, step=1, domain_ids=doms)[1])
    return out


def test_accumulator_equals_combine_stats_and_folds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_stats, "FOLD", 4)  # fold several times within the interval
    parts = _parts(11)
    acc = StatsAccumulator()
    for p in parts:
        acc.add(p)
    assert len(acc._parts) < 4
    got, want = acc.pop(), stats_to_python(combine_stats(parts))
    assert not acc
    assert got["num_invalid"] == 1 and got["num_samples"] == want["num_samples"]
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-6), key


def test_flatten_names_domains_and_leaves_the_losses_out() -> None:
    stats = combine_stats(_parts(2))
    flat = flatten(stats, "reweight/", ["web", "code"])
    assert set(flat) >= {"reweight/domain_weight_share/web", "reweight/domain_sample_share/code"}
    assert "reweight/mean_loss" not in flat and "reweight/weighted_loss" not in flat
    py = flatten(stats_to_python(stats), "r/")
    assert py["r/domain_weight_share/0"] == pytest.approx(
        flat["reweight/domain_weight_share/web"].item()
    )


def test_logged_losses_are_nan_without_a_valid_sample() -> None:
    rw = Reweighter("linupper", 0.5)
    empty = rw.weights_and_stats(torch.tensor([float("nan"), float("inf")]))[1]
    out = stats_to_python(logged_losses(empty))
    assert math.isnan(out["loss"]) and math.isnan(out["weighted_loss"])
    some = rw.weights_and_stats(torch.tensor([1.0, 3.0]))[1]
    assert stats_to_python(logged_losses(some))["loss"] == pytest.approx(2.0)
