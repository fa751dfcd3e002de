"""Per-sample losses from a Hugging Face causal LM's outputs (shared by the HF integrations)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch

from lossreweight.losses import per_sample_loss


def logits_of(outputs: Any) -> torch.Tensor:
    """`outputs.logits` of a ModelOutput, a dict, or the first element of a tuple."""
    if isinstance(outputs, Mapping):
        if "logits" not in outputs:
            raise ValueError(f"the model output has no 'logits' (keys: {', '.join(outputs)})")
        return outputs["logits"]
    if isinstance(outputs, tuple | list):
        return outputs[0]
    return outputs


def check_fused_head(model: torch.nn.Module) -> torch.nn.Module:
    """The output projection, when logits are exactly `hidden @ head.weight.T` (fused path)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or not hasattr(head, "weight"):
        raise ValueError(
            f"loss_from='hidden_states' needs a model with get_output_embeddings(); "
            f"{type(model).__name__} has none: use loss_from='logits'"
        )
    if getattr(head, "bias", None) is not None:
        raise ValueError(
            "loss_from='hidden_states' needs an output projection without bias; use "
            "loss_from='logits'"
        )
    cfg = getattr(model, "config", None)
    for attr in ("final_logit_softcapping", "logit_scale", "output_multiplier_scale"):
        if getattr(cfg, attr, None) not in (None, 1, 1.0):
            # The model transforms logits after the projection: the fused CE would be wrong.
            raise ValueError(
                f"loss_from='hidden_states' does not apply: the model's config sets {attr}; use "
                "loss_from='logits'"
            )
    return head


def accepts_kwarg(model: torch.nn.Module, name: str) -> bool:
    return name in inspect.signature(model.forward).parameters


def causal_lm_losses(
    model: torch.nn.Module,
    unwrapped: torch.nn.Module,
    inputs: dict[str, Any],
    *,
    loss_from: str = "logits",
) -> tuple[torch.Tensor, Any]:
    """Run `model` on `inputs` (labels popped, so the model computes no loss of its own) and
    return (per-sample mean losses [B] in float32, outputs).

    `labels` are the input ids (shifted inside, as HF causal LMs do), or `shift_labels`, when a
    collator provides them, are already aligned with the positions.
    """
    labels = inputs.pop("labels", None)
    shift_labels = inputs.pop("shift_labels", None)
    if labels is None and shift_labels is None:
        raise ValueError("reweighting needs 'labels' (or 'shift_labels') in every training batch")
    targets, shift = (shift_labels, False) if shift_labels is not None else (labels, True)
    if loss_from == "hidden_states":
        head = check_fused_head(unwrapped)
        extra: dict[str, Any] = {"output_hidden_states": True}
        if accepts_kwarg(unwrapped, "logits_to_keep"):
            extra["logits_to_keep"] = 1  # the model's own logits are unused: keep one position
        outputs = model(**inputs, **extra)
        hidden = outputs["hidden_states"][-1]
        losses, _ = per_sample_loss(
            hidden_states=hidden, labels=targets, lm_head_weight=head.weight, shift=shift
        )
    elif loss_from == "logits":
        outputs = model(**inputs)
        losses, _ = per_sample_loss(logits_of(outputs), targets, shift=shift)
    else:
        raise ValueError(f"loss_from must be 'logits' or 'hidden_states', got {loss_from!r}")
    return losses, outputs
