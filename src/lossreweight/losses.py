"""Per-sample cross-entropy without a second copy of the logits (SPEC 1).

The common recipe (`logits[:, :-1].contiguous()` + `cross_entropy(reduction="none")`) keeps
a shifted copy and a float32 log-softmax of the full [B, T, V] logits alive for backward.
Here a custom autograd function walks over chunks of tokens: forward keeps only the
per-token log-sum-exp ([B, T] floats); backward recomputes softmax per chunk and writes the
gradient straight into one buffer. The fused path goes further and never forms the full
logits at all: it multiplies chunks of final hidden states by the output projection.
All arithmetic is float32 whatever the input dtype.
"""

from __future__ import annotations

import torch

from lossreweight.reweighting.checks import is_integer, on_cpu, tensor_arg

IGNORE_INDEX = -100
# Elements (tokens x vocab) per chunk. CPU: 2**22 floats = 16 MiB of float32 temporaries.
# GPU: 2**26 (256 MiB): smaller chunks leave the GPU idle between many small kernels.
_CHUNK_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 26}


def _chunk_tokens(vocab: int, chunk_size: int | None, device: torch.device) -> int:
    if chunk_size is not None:
        if not is_integer(chunk_size) or chunk_size < 1:
            raise ValueError(
                f"chunk_size must be an integer >= 1 (tokens per chunk) or None, got {chunk_size!r}"
            )
        return int(chunk_size)
    return max(1, _CHUNK_ELEMENTS.get(device.type, 1 << 22) // max(vocab, 1))


class _TokenCrossEntropy(torch.autograd.Function):
    """Per-token CE over flat [N, V] logits (a view is fine); 0 where target is ignored."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:  # type: ignore[override]
        n = logits.shape[0]
        active = targets != IGNORE_INDEX
        safe_t = torch.where(active, targets, 0)
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        target_logit = torch.empty(n, dtype=torch.float32, device=logits.device)
        for s in range(0, n, chunk):
            z = logits[s : s + chunk].float()
            lse[s : s + chunk] = torch.logsumexp(z, dim=-1)
            target_logit[s : s + chunk] = z.gather(1, safe_t[s : s + chunk, None]).squeeze(1)
        loss = torch.where(active, lse - target_logit, 0.0)
        ctx.save_for_backward(logits, safe_t, active, lse)
        ctx.chunk = chunk
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):  # type: ignore[override]
        logits, safe_t, active, lse = ctx.saved_tensors
        chunk = ctx.chunk
        grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        g = torch.where(active, grad_loss.float(), 0.0)
        for s in range(0, logits.shape[0], chunk):
            e = s + chunk
            p = torch.exp(logits[s:e].float() - lse[s:e, None])
            p.scatter_add_(1, safe_t[s:e, None], -torch.ones_like(lse[s:e, None]))
            grad[s:e] = p * g[s:e, None]
        return grad, None, None


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """Per-token CE of (hidden @ weight.T) without materialising the [N, V] logits."""

    @staticmethod
    def forward(
        ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int
    ) -> torch.Tensor:  # type: ignore[override]
        n = hidden.shape[0]
        active = targets != IGNORE_INDEX
        safe_t = torch.where(active, targets, 0)
        lse = torch.empty(n, dtype=torch.float32, device=hidden.device)
        target_logit = torch.empty(n, dtype=torch.float32, device=hidden.device)
        # Matmuls run in the hidden states' dtype (bf16 under autocast), also in backward,
        # where autocast is off; softmax arithmetic is float32.
        w = weight.to(hidden.dtype)
        for s in range(0, n, chunk):
            z = (hidden[s : s + chunk] @ w.t()).float()
            lse[s : s + chunk] = torch.logsumexp(z, dim=-1)
            target_logit[s : s + chunk] = z.gather(1, safe_t[s : s + chunk, None]).squeeze(1)
        ctx.save_for_backward(hidden, weight, safe_t, active, lse)
        ctx.chunk = chunk
        return torch.where(active, lse - target_logit, 0.0)

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):  # type: ignore[override]
        hidden, weight, safe_t, active, lse = ctx.saved_tensors
        chunk = ctx.chunk
        g = torch.where(active, grad_loss.float(), 0.0)
        grad_h = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_w = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            if ctx.needs_input_grad[1]
            else None
        )
        w = weight.to(hidden.dtype)
        for s in range(0, hidden.shape[0], chunk):
            e = s + chunk
            h = hidden[s:e]
            p = torch.exp((h @ w.t()).float() - lse[s:e, None])
            p.scatter_add_(1, safe_t[s:e, None], -torch.ones_like(lse[s:e, None]))
            p.mul_(g[s:e, None])
            if grad_h is not None:
                grad_h[s:e] = p.to(hidden.dtype) @ w
            if grad_w is not None:
                if h.dtype == torch.float32:
                    grad_w.addmm_(p.t(), h)
                else:  # tensor-core matmul in bf16/fp16, accumulated across chunks in fp32
                    grad_w.add_(p.to(h.dtype).t() @ h)
        if grad_w is not None:
            grad_w = grad_w.to(weight.dtype)
        return grad_h, grad_w, None, None


def _aligned_targets(labels: torch.Tensor, shift: bool) -> torch.Tensor:
    """Targets aligned with every input position: with shift, position t predicts label t+1
    and the last position is ignored. Shifting the (small) labels instead of the logits keeps
    the logits a flat view: no copy."""
    if not shift:
        return labels
    pad = torch.full_like(labels[:, :1], IGNORE_INDEX)
    return torch.cat([labels[:, 1:], pad], dim=1)


def _checked_targets(targets: torch.Tensor, vocab: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Targets outside [0, vocab) would index out of bounds (a device-side assert on CUDA).
    On CPU they are an error, found eagerly; elsewhere (reading them would synchronise) their
    positions are ignored and their samples get a NaN loss: invalid, weight 0, counted in the
    reweighting statistics' num_invalid. Returns (targets, samples with such a label or None)."""
    bad = (targets != IGNORE_INDEX) & ((targets < 0) | (targets >= vocab))
    if on_cpu(targets):
        if bool(bad.any()):
            value = int(targets[bad][0])
            raise ValueError(
                f"labels hold {value}, outside the vocabulary [0, {vocab}) (ignored positions "
                "must be "
                f"{IGNORE_INDEX} or ignore_index); check the tokenizer's vocabulary size against "
                "the model's"
            )
        return targets, None
    return torch.where(bad, IGNORE_INDEX, targets), bad.any(dim=1)


def _reduce(token_losses: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    active = targets != IGNORE_INDEX
    n = active.sum(dim=1)
    total = token_losses.sum(dim=1)
    # Rows with no active token are invalid: NaN loss, zero gradient (where() masks it).
    losses = torch.where(n > 0, total / n.clamp(min=1).to(torch.float32), torch.nan)
    return losses, n


def per_sample_loss(
    logits: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    *,
    hidden_states: torch.Tensor | None = None,
    lm_head_weight: torch.Tensor | None = None,
    shift: bool = True,
    ignore_index: int = IGNORE_INDEX,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy per sample, in float32: returns (losses [B], n_tokens [B]).

    Give either `logits` [B, T, V] or `hidden_states` [B, T, D] with `lm_head_weight`
    [V, D] (the fused path, which never forms the full logits). `labels` [B, T] are the
    input ids when `shift=True` (position t predicts label t+1), or already aligned with
    `shift=False`. Positions equal to `ignore_index` do not count. A sample with no active
    position gets a NaN loss, which `Reweighter` treats as invalid (weight 0).

    A label outside [0, vocab) is a ValueError on CPU. On other devices it is not looked for
    (that would synchronise the host); its sample gets a NaN loss instead, so it is invalid,
    with no gradient and no device-side assert.
    """
    if labels is None:
        raise ValueError("labels are required: per_sample_loss(logits, labels)")
    if not is_integer(ignore_index):
        raise TypeError(
            f"ignore_index must be an integer (the label of positions that do not count), got "
            f"{ignore_index!r}"
        )
    if shift not in (True, False):
        raise TypeError(f"shift must be True or False, got {shift!r}")
    if (logits is None) == (hidden_states is None):
        raise ValueError("pass exactly one of logits or hidden_states (with lm_head_weight)")
    name = "logits" if logits is not None else "hidden_states"
    x = tensor_arg(name, logits if logits is not None else hidden_states)
    labels = tensor_arg("labels", labels)
    if x.dim() != 3:
        raise ValueError(
            f"{name} must be [batch, seq, {'vocab' if logits is not None else 'dim'}], got shape "
            f"{tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if labels.dim() != 2 or labels.shape != x.shape[:2]:
        raise ValueError(
            f"labels shape {tuple(labels.shape)} must be [batch, seq] = {tuple(x.shape[:2])} to "
            f"match {name}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}; use labels.long()")
    if shift and x.shape[1] < 2:
        raise ValueError("with shift=True sequences need at least 2 positions")
    if logits is None:
        lm_head_weight = (
            tensor_arg("lm_head_weight", lm_head_weight) if lm_head_weight is not None else None
        )
        if (
            lm_head_weight is None
            or lm_head_weight.dim() != 2
            or lm_head_weight.shape[1] != x.shape[-1]
            or lm_head_weight.shape[0] < 1
        ):
            raise ValueError(
                "the fused path needs lm_head_weight of shape [vocab, dim] with dim = "
                f"hidden_states.shape[-1] = {x.shape[-1]}"
            )
        if not lm_head_weight.is_floating_point() or lm_head_weight.device != x.device:
            raise ValueError(
                f"lm_head_weight must be a floating-point tensor on {x.device} like "
                f"hidden_states, got {lm_head_weight.dtype} on {lm_head_weight.device}"
            )
    elif x.shape[-1] < 1:
        raise ValueError("logits have a vocabulary of size 0 (their last dimension)")
    if labels.device != x.device:
        raise ValueError(
            f"labels are on {labels.device} but {name} on {x.device}: move them to one device"
        )
    vocab = x.shape[-1] if logits is not None else lm_head_weight.shape[0]
    labels = labels.to(torch.int64)
    if ignore_index != IGNORE_INDEX:
        labels = torch.where(labels == ignore_index, IGNORE_INDEX, labels)
    targets, outside = _checked_targets(_aligned_targets(labels, shift), vocab)
    b, t = targets.shape
    flat_targets = targets.reshape(-1)
    if logits is not None:
        token = _TokenCrossEntropy.apply(
            x.reshape(b * t, vocab), flat_targets, _chunk_tokens(vocab, chunk_size, x.device)
        )
    else:
        token = _FusedLinearCrossEntropy.apply(
            x.reshape(b * t, x.shape[-1]),
            lm_head_weight,
            flat_targets,
            _chunk_tokens(vocab, chunk_size, x.device),
        )
    losses, n = _reduce(token.reshape(b, t), targets)
    if outside is not None:  # a label outside the vocabulary makes its sample invalid
        losses = torch.where(outside, torch.nan, losses)
    return losses, n
