"""An example strategy: LinUpper with twice the slope, i.e. LinUpper at half the temperature.

A strategy is `fn(x, delta) -> scores`: x holds the batch's losses normalised to
[-delta, delta] (float32), the scores become weights through softmax(scores / r). It must be
elementwise, differentiable-free (it runs under no_grad) and finite for finite x.
"""

import torch


def linupper_steep(x: torch.Tensor, delta: float) -> torch.Tensor:
    return 2.0 * torch.clamp(x + delta, max=delta)
