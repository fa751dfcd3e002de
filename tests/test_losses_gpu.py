"""GPU-only: the step path has no host synchronisation (SPEC 2.3), bad input included: on
CUDA, labels outside the vocabulary, out-of-range domain ids and a custom strategy's NaN
scores are handled without a sync and without a device-side assert (issue 13.5)."""

from __future__ import annotations

import pytest
import torch

from lossreweight import Reweighter, per_sample_loss
from lossreweight.reweighting import stats_to_python

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("strategy", ["uniform", "linupper", "quadratic", "extremes"])
@pytest.mark.parametrize("max_weight", [None, 2.0])
def test_step_path_has_no_host_sync(strategy, max_weight):
    dev = torch.device("cuda")
    logits = torch.randn(8, 64, 512, device=dev, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, 512, (8, 64), device=dev)
    labels[3] = -100
    labels[5, 10] = 600  # outside the vocabulary: sample 5 becomes invalid
    rw = Reweighter(strategy, 0.4, max_weight=max_weight, num_domains=3)
    doms = torch.randint(0, 3, (8,), device=dev)
    doms[0], doms[1] = 7, -1  # outside [0, 3): left out of the shares
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        losses, _ = per_sample_loss(logits, labels)
        w = rw.weights(losses.detach(), step=5, domain_ids=doms)
        loss = rw.weighted_loss(losses, weights=w)
        loss.backward()
        h = torch.randn(8, 64, 128, device=dev, requires_grad=True)
        wt = torch.randn(512, 128, device=dev, requires_grad=True)
        l2, _ = per_sample_loss(hidden_states=h, lm_head_weight=wt, labels=labels)
        out = rw.reweight(l2, step=5, domain_ids=doms, accumulation_steps=2)
        out.loss.backward()
        custom = Reweighter(lambda x, d: torch.sqrt(x), 0.4).reweight(
            l2.detach(), step=5
        )  # NaN for x < 0
    finally:
        torch.cuda.set_sync_debug_mode("default")
    stats = stats_to_python(out.stats)
    assert stats["num_invalid"] == 2  # the all-ignored row and the row with label 600
    assert torch.all(torch.isfinite(w)) and w[3] == 0 and w[5] == 0
    assert sum(stats["domain_sample_share"]) == pytest.approx(
        4 / 6
    )  # valid samples 0 and 1 left out
    # The lowest valid loss has x = -1: sqrt gives NaN, that sample turns invalid.
    assert (
        torch.all(torch.isfinite(custom.weights))
        and stats_to_python(custom.stats)["num_invalid"] >= 3
    )
