"""The reference fitness: F = lam * tanh(0.01 * (1/L_D + 1/L_G)) + gamma * tanh(S / (params_G + params_D)).

The loss term rewards low losses, the size term small networks; both lie in [0, 1], so F lies in [0, lam + gamma] = [0, 1].

Edge cases, so that F is always finite and never raises:
- a loss of exactly 0 gives 1/0 = +inf and tanh(+inf) = 1: the limit of the formula as the loss goes to 0;
- a negative, NaN or infinite loss gives a loss term of 0: 1/L has no meaning there (BCE is never negative;
  a non-finite loss means training diverged);
- a parameter count of 0 gives a size term of 1 (the limit).
"""

from __future__ import annotations

import math

from neuroevo.config import FitnessConfig


def loss_term(d_loss: float, g_loss: float) -> float:
    if not all(math.isfinite(x) and x >= 0 for x in (d_loss, g_loss)):
        return 0.0
    inverse = sum(math.inf if x == 0 else 1.0 / x for x in (d_loss, g_loss))
    return math.tanh(0.01 * inverse)


def size_term(params_g: int, params_d: int, scale: float) -> float:
    total = params_g + params_d
    return 1.0 if total <= 0 else math.tanh(scale / total)


def fitness(d_loss: float, g_loss: float, params_g: int, params_d: int, cfg: FitnessConfig) -> float:
    return cfg.lam * loss_term(d_loss, g_loss) + cfg.gamma * size_term(params_g, params_d, cfg.scale)
