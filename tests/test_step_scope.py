"""scope="step": A micro-batches give the gradient of one process on the whole batch."""

from __future__ import annotations

import pytest
import torch

from lossreweight import Reweighter, per_sample_loss
from lossreweight.reweighting import accumulate_step, stats_to_python


def _lm(seed=0, vocab=29, dim=12):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Embedding(vocab, dim), torch.nn.Linear(dim, vocab))


@pytest.mark.parametrize("strategy", ["linupper", "quadratic", "extremes"])
def test_four_micro_batches_equal_whole_batch(strategy):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 29, (16, 10), generator=g)
    ids[5, 4:] = -100  # padding-like labels: unequal active counts
    inputs = ids.clamp(min=0)
    doms = torch.arange(16) % 2

    def loss_fn(mb):
        x, y = mb
        return per_sample_loss(model(x), y)[0]

    model = _lm()
    rw = Reweighter(strategy, 0.3, scope="step", num_domains=2)
    mbs = [(inputs[i * 4 : (i + 1) * 4], ids[i * 4 : (i + 1) * 4]) for i in range(4)]
    res = accumulate_step(loss_fn, mbs, rw, step=1, domain_ids=list(doms.split(4)))
    micro_grads = [p.grad.clone() for p in model.parameters()]

    model.zero_grad()
    whole = Reweighter(strategy, 0.3, num_domains=2)
    out = whole.reweight(loss_fn((inputs, ids)), step=1, domain_ids=doms)
    out.loss.backward()
    for a, p in zip(micro_grads, model.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, atol=1e-6, rtol=1e-5)
    assert float(res.weights.sum()) == pytest.approx(1.0)
    got, want = stats_to_python(res.stats), stats_to_python(out.stats)
    assert got["domain_weight_share"] == pytest.approx(want["domain_weight_share"])


def test_micro_scope_differs_from_step_scope_but_uniform_agrees():
    """Sanity: the two scopes differ for linupper; for uniform both equal the mean loss."""
    g = torch.Generator().manual_seed(1)
    losses = torch.rand(8, generator=g) * torch.tensor([1, 1, 1, 1, 5, 5, 5, 5.0])
    micro = [Reweighter("linupper", 0.3).weights(part) / 2 for part in losses.split(4)]
    step = Reweighter("linupper", 0.3).weights(losses)
    assert not torch.allclose(torch.cat(micro), step)
    u = Reweighter("uniform")
    total = sum(float(u.weighted_loss(part, accumulation_steps=2)) for part in losses.split(4))
    assert total == pytest.approx(float(losses.mean()))


def test_accumulate_step_bad_input():
    with pytest.raises(ValueError, match="at least one micro-batch"):
        accumulate_step(lambda mb: mb, [], Reweighter(), step=0)
