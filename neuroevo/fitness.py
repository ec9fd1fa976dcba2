"""Fitness: F = lam * loss_term + gamma * tanh(S / (params_G + params_D)); both terms lie in [0, 1], so F lies in
[0, lam + gamma] = [0, 1]. The size term rewards small networks. The loss term depends on the chromosome's loss:

- bce (every seed-v1 chromosome; v2's bce): the reference, tanh(0.01 * (1/L_D + 1/L_G)). It rewards low losses.
  A loss of exactly 0 gives 1/0 = +inf and tanh(+inf) = 1, the formula's limit; a negative (impossible for BCE),
  NaN or infinite loss gives 0.
- wgan-gp: 1 / (1 + |L_D|). L_D = E[D(G(z))] - E[D(x)] + 10 * GP is minus the critic's estimate of the Wasserstein
  distance plus its gradient penalty; it can be negative, so 1/L_D would be meaningless. |L_D| is 0 when the critic
  is 1-Lipschitz and cannot tell real from fake, and grows with the estimated distance: the term is 1 at that
  ideal and falls towards 0. G's loss, -E[D(G(z))], has an arbitrary offset and is not used.
- hinge: min(L_D, 2) / 2. L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))] is 2 when D cannot tell real from fake
  (it scores everything 0) and falls to 0 as D separates them with a margin: the term is 1 when G fools D and 0
  when D wins outright. G's loss, -E[D(G(z))], is unbounded both ways and is not used.

A non-finite loss gives a loss term of 0 for every loss. The terms of different losses measure different things
(the reference term is about 0.02 for BCE losses near chance, the others are near 1 there): a population that
mixes losses ranks them by these scales too, so compare losses within a run with care (README, "Search space v2").
"""

from __future__ import annotations

import math

from neuroevo.config import FitnessConfig


def loss_term(d_loss: float, g_loss: float, loss: str = "bce") -> float:
    if loss == "wgan-gp":
        return 1.0 / (1.0 + abs(d_loss)) if math.isfinite(d_loss) else 0.0
    if loss == "hinge":
        return min(d_loss, 2.0) / 2.0 if math.isfinite(d_loss) and d_loss >= 0 else 0.0
    if not all(math.isfinite(x) and x >= 0 for x in (d_loss, g_loss)):
        return 0.0
    inverse = sum(math.inf if x == 0 else 1.0 / x for x in (d_loss, g_loss))
    return math.tanh(0.01 * inverse)


def size_term(params_g: int, params_d: int, scale: float) -> float:
    total = params_g + params_d
    return 1.0 if total <= 0 else math.tanh(scale / total)


def fitness(d_loss: float, g_loss: float, params_g: int, params_d: int, cfg: FitnessConfig, loss: str = "bce") -> float:
    return cfg.lam * loss_term(d_loss, g_loss, loss) + cfg.gamma * size_term(params_g, params_d, cfg.scale)
