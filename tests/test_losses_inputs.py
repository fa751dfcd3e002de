"""per_sample_loss misuse (issue 13.5/13.6): errors in the caller's terms, never an index
error from inside torch or a device-side assert."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lossreweight.losses as losses_mod
from lossreweight import Reweighter, per_sample_loss
from lossreweight.reweighting import stats_to_python


def _data(b=3, t=6, v=11):
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, t, v, generator=g, requires_grad=True), torch.randint(
        0, v, (b, t), generator=g
    )


@pytest.mark.parametrize("bad", [11, 500, -5])
def test_label_outside_vocabulary_on_cpu(bad):
    logits, labels = _data()
    labels[1, 3] = bad
    with pytest.raises(
        ValueError, match=rf"labels hold {bad}, outside the vocabulary \[0, 11\) .*vocabulary size"
    ):
        per_sample_loss(logits, labels)
    h, w = torch.randn(3, 6, 4), torch.randn(11, 4)
    with pytest.raises(ValueError, match=rf"labels hold {bad}, outside the vocabulary \[0, 11\)"):
        per_sample_loss(hidden_states=h, lm_head_weight=w, labels=labels)


def test_label_outside_vocabulary_where_no_check_runs(monkeypatch):
    """Off CPU (simulated): the sample becomes invalid, the others are untouched, no gradient
    reaches the bad sample, and the Reweighter counts it."""
    logits, labels = _data()
    want, _ = per_sample_loss(logits, labels)
    labels[1, 3] = 99
    monkeypatch.setattr(losses_mod, "on_cpu", lambda t: False)
    got, _ = per_sample_loss(logits, labels)
    assert torch.isnan(got[1]) and torch.allclose(got[[0, 2]], want[[0, 2]])
    rw = Reweighter("linupper", 0.5)
    out = rw.reweight(got)
    out.loss.backward()
    assert torch.all(torch.isfinite(logits.grad)) and torch.all(logits.grad[1] == 0)
    assert stats_to_python(out.stats)["num_invalid"] == 1


def test_label_at_position_zero_is_never_a_target():
    logits, labels = _data()
    labels[:, 0] = 999  # dropped by the shift: not an error
    losses, _ = per_sample_loss(logits, labels)
    assert torch.all(torch.isfinite(losses))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda lg, lb: per_sample_loss(lg.detach().numpy(), lb),
            TypeError,
            r"logits must be a torch.Tensor, got numpy.ndarray; convert it with "
            r"torch.from_numpy\(logits\)",
        ),
        (
            lambda lg, lb: per_sample_loss(lg, lb.numpy()),
            TypeError,
            r"labels must be a torch.Tensor, got numpy",
        ),
        (lambda lg, lb: per_sample_loss(lg, lb.tolist()), TypeError, r"torch.as_tensor\(labels\)"),
        (
            lambda lg, lb: per_sample_loss(lb[..., None].expand(-1, -1, 4), lb),
            TypeError,
            r"logits must be a floating-point tensor, got torch.int64",
        ),
        (
            lambda lg, lb: per_sample_loss(
                hidden_states=torch.randn(3, 6, 4), labels=lb, lm_head_weight=np.zeros((11, 4))
            ),
            TypeError,
            r"lm_head_weight must be a torch.Tensor",
        ),
    ],
)
def test_bad_types(call, error, match):
    logits, labels = _data()
    with pytest.raises(error, match=match):
        call(logits, labels)
