"""An exponential moving average of G's weights (Karras et al. 2018, Yazici et al. 2019): the generator that samples,
FID and KID are drawn from where the chromosome's g_ema gene is on. G itself trains on unchanged.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn


class EMA:
    """After G's k-th step, the average holds sum_i decay**(k-i) w_i / sum_i decay**(k-i) of G's weights w_1..w_k
    after each of its steps: bias-corrected as Adam's moments are, so that G's initial weights have no share however
    short the training. Buffers (BatchNorm's statistics, spectral norm's vectors) are G's latest."""

    def __init__(self, G: nn.Module, decay: float):
        self.decay, self.steps = decay, 0
        self.G = copy.deepcopy(G).requires_grad_(False)

    @torch.no_grad()
    def update(self, G: nn.Module) -> None:
        self.steps += 1
        weight = (1 - self.decay) / (1 - self.decay**self.steps)  # 1 at the first step
        for average, p in zip(self.G.parameters(), G.parameters()):
            average.lerp_(p, weight)
        for average, b in zip(self.G.buffers(), G.buffers()):
            average.copy_(b)


@torch.no_grad()
def recalibrate(G: nn.Module, noise: Callable[[], torch.Tensor], batches: int) -> int:
    """G's BatchNorm statistics measured afresh, as the mean over `batches` batches of its own outputs (noise()):
    the running statistics G's training left belong to G's last weights, not to their average. Returns the batches
    G ran on: 0 where it has no BatchNorm."""
    norms = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative mean over the batches
    G.train()
    for _ in range(batches):
        G(noise())
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return batches
