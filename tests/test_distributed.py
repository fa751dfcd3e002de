"""SPEC 4 and 6 under 2 gloo ranks: weights are global-rank slices; gradients match."""

from __future__ import annotations

import pytest
import torch
from distributed_utils import run_ranks
from torch.nn.parallel import DistributedDataParallel as DDP

from lossreweight import Reweighter
from lossreweight.reweighting import accumulate_step, stats_to_python

pytestmark = pytest.mark.xdist_group("dist")

STRATS = ["uniform", "linupper", "quadratic", "extremes"]


def _global_batch(sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    x = torch.randn(n, 6, generator=g)
    y = torch.randn(n, 1, generator=g) * torch.linspace(0.1, 3.0, n)[:, None]  # heterogeneous
    losses = torch.rand(n, generator=g) * 5
    losses[2] = float("nan")
    doms = torch.arange(n) % 3
    return x, y, losses, doms


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _slices(sizes):
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [slice(s, s + n) for s, n in zip(starts, sizes, strict=True)]


WEIGHT_CASES = [([4, 4], None), ([3, 6], None), ([3, 6], 8), ([0, 5], None)]
STAT_KEYS = ("num_samples", "num_invalid", "max_weight_x_m")


def _weights_worker(rank, world, cases):
    out = {}
    for c, (sizes, max_batch_size) in enumerate(cases):
        _, _, losses, doms = _global_batch(sizes)
        sl = _slices(sizes)[rank]
        for s in STRATS:
            rw = Reweighter(s, 0.4, max_batch_size=max_batch_size, num_domains=3)
            w, stats = rw.weights_and_stats(losses[sl], step=1, domain_ids=doms[sl])
            out[f"{c}/{s}"] = w
            out[f"{c}/{s}/stats"] = torch.tensor([stats_to_python(stats)[k] for k in STAT_KEYS])
    return out


def test_weights_are_global_slices():
    """Equal and unequal sizes, an empty rank, with and without a known capacity."""
    results = run_ranks(_weights_worker, 2, WEIGHT_CASES)
    for c, (sizes, _) in enumerate(WEIGHT_CASES):
        _, _, losses, doms = _global_batch(sizes)
        for s in STRATS:
            rw = Reweighter(s, 0.4, num_domains=3)
            want, stats = rw.weights_and_stats(losses, step=1, domain_ids=doms)
            st = stats_to_python(stats)
            for rank, sl in enumerate(_slices(sizes)):
                torch.testing.assert_close(results[rank][f"{c}/{s}"], want[sl], atol=1e-7, rtol=0)
                got = results[rank][f"{c}/{s}/stats"].tolist()
                assert got == pytest.approx([st[k] for k in STAT_KEYS])


def _per_sample(model, x, y):
    return ((model(x) - y) ** 2).mean(dim=1)


DDP_CASES = [(sizes, s) for sizes in ([4, 4], [2, 7]) for s in ("uniform", "linupper")]


def _ddp_worker(rank, world, cases):
    out = {}
    for c, (sizes, strategy) in enumerate(cases):
        x, y, _, _ = _global_batch(sizes)
        sl = _slices(sizes)[rank]
        model = DDP(_model())
        rw = Reweighter(strategy, 0.4)
        rw.weighted_loss(_per_sample(model, x[sl], y[sl]), step=3).backward()
        out[str(c)] = [p.grad for p in model.parameters()]
    return out


def test_ddp_gradient_equals_single_process():
    results = run_ranks(_ddp_worker, 2, DDP_CASES)
    for c, (sizes, strategy) in enumerate(DDP_CASES):
        x, y, _, _ = _global_batch(sizes)
        model = _model()
        Reweighter(strategy, 0.4).weighted_loss(_per_sample(model, x, y), step=3).backward()
        for rank in range(2):
            for got, p in zip(results[rank][str(c)], model.parameters(), strict=True):
                torch.testing.assert_close(got, p.grad, atol=1e-6, rtol=1e-5)


def _step_scope_worker(rank, world, sizes, micro):
    x, y, _, _ = _global_batch(sizes)
    sl = _slices(sizes)[rank]
    xr, yr = x[sl], y[sl]
    model = DDP(_model())
    rw = Reweighter("linupper", 0.3, scope="step")
    mbs = [(xr[i::micro], yr[i::micro]) for i in range(micro)]
    accumulate_step(lambda mb: _per_sample(model, *mb), mbs, rw, step=1, model=model)
    return [p.grad for p in model.parameters()]


def test_step_scope_under_ddp_equals_single_process():
    sizes = [8, 8]
    grads = run_ranks(_step_scope_worker, 2, sizes, 4)
    x, y, _, _ = _global_batch(sizes)
    model = _model()
    Reweighter("linupper", 0.3).weighted_loss(_per_sample(model, x, y), step=1).backward()
    for rank in range(2):
        for got, p in zip(grads[rank], model.parameters(), strict=True):
            torch.testing.assert_close(got, p.grad, atol=1e-6, rtol=1e-5)
