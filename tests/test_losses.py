"""SPEC 1: per-sample loss, both paths, against the common recipe."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lossreweight import per_sample_loss


def common_recipe(logits, labels, shift=True):
    if shift:
        logits, labels = logits[:, :-1].contiguous(), labels[:, 1:].contiguous()
    b, t, v = logits.shape
    tok = F.cross_entropy(logits.float().view(-1, v), labels.view(-1), reduction="none").view(b, t)
    active = labels != -100
    return (tok * active).sum(1) / active.sum(1), active.sum(1)


def _data(b=4, t=9, v=37, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, v, generator=g).to(dtype).requires_grad_()
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[0, 0] = -100  # first position masked
    labels[1, 3:6] = -100
    return logits, labels


@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("chunk_size", [None, 1, 5])
def test_logits_path_matches_common_recipe(shift, chunk_size):
    logits, labels = _data()
    ours, n = per_sample_loss(logits, labels, shift=shift, chunk_size=chunk_size)
    ref, n_ref = common_recipe(logits, labels, shift)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)
    assert torch.equal(n, n_ref)
    g = torch.randn(4)
    (ga,) = torch.autograd.grad((ours * g).sum(), logits)
    (gb,) = torch.autograd.grad((ref * g).sum(), logits)
    torch.testing.assert_close(ga, gb, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("shift", [True, False])
def test_fused_path_matches(shift):
    g = torch.Generator().manual_seed(1)
    h = torch.randn(3, 8, 16, generator=g, requires_grad=True)
    w = torch.randn(50, 16, generator=g, requires_grad=True)
    labels = torch.randint(0, 50, (3, 8), generator=g)
    labels[2, :4] = -100
    ours, n = per_sample_loss(
        hidden_states=h, lm_head_weight=w, labels=labels, shift=shift, chunk_size=7
    )
    ref, n_ref = common_recipe(h @ w.t(), labels, shift)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    gr = torch.randn(3)
    ga = torch.autograd.grad((ours * gr).sum(), [h, w])
    gb = torch.autograd.grad((ref * gr).sum(), [h, w])
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_bf16_logits_computed_in_float32():
    logits, labels = _data(dtype=torch.bfloat16)
    ours, _ = per_sample_loss(logits, labels)
    assert ours.dtype == torch.float32
    ref, _ = common_recipe(logits.float(), labels)  # fp32 of the same bf16 values
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    (grad,) = torch.autograd.grad(ours.sum(), logits)
    assert grad.dtype == torch.bfloat16


def test_row_without_active_tokens_is_invalid_with_zero_gradient():
    logits, labels = _data()
    labels[2] = -100
    losses, n = per_sample_loss(logits, labels)
    assert torch.isnan(losses[2]) and n[2] == 0
    safe = torch.where(torch.isfinite(losses), losses, 0.0).sum()
    (grad,) = torch.autograd.grad(safe, logits)
    assert torch.all(torch.isfinite(grad)) and torch.all(grad[2] == 0)


def test_custom_ignore_index():
    logits, labels = _data()
    labels2 = torch.where(labels == -100, 7777, labels)
    a, _ = per_sample_loss(logits, labels)
    b, _ = per_sample_loss(logits, labels2, ignore_index=7777)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda lg, lb: per_sample_loss(lg, lb[:, :-1]), "labels shape"),
        (lambda lg, lb: per_sample_loss(lg[0], lb), r"logits must be \[batch, seq"),
        (lambda lg, lb: per_sample_loss(lg, lb.float()), "integer tensor"),
        (lambda lg, lb: per_sample_loss(lg, None), "labels are required"),
        (lambda lg, lb: per_sample_loss(lg, lb, hidden_states=lg), "exactly one"),
        (lambda lg, lb: per_sample_loss(hidden_states=lg, labels=lb), "lm_head_weight"),
        (lambda lg, lb: per_sample_loss(lg, lb, chunk_size=0), "chunk_size"),
    ],
)
def test_bad_input(call, match):
    logits, labels = _data()
    with pytest.raises(ValueError, match=match):
        call(logits, labels)


def test_no_second_logits_copy_saved_for_backward():
    """Tensors saved for backward: the logits themselves plus [N]-sized vectors only."""
    logits, labels = _data(b=2, t=16, v=1000)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        per_sample_loss(logits, labels)
    big = [t for t in saved if t.numel() >= logits.numel()]
    assert len(big) == 1 and big[0].data_ptr() == logits.data_ptr()
