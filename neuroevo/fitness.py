"""Fitness: F = lam * loss_term + gamma * tanh(S / (params_G + params_D)); both terms lie in [0, 1], so F lies in
[0, lam + gamma] = [0, 1]. The size term rewards small networks, the loss term low losses.

The loss term is the reference formula, tanh(0.01 * sum of 1/x), over the chromosome's losses x that cannot be
negative; 1/x of a loss that can be negative would be meaningless (a small negative loss would score near 0, a
loss crossing 0 would jump from -inf to +inf):

- bce (every seed-v1 chromosome, and v2's bce): x = L_D and L_G, the reference exactly.
- hinge: x = L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))] >= 0, which falls as D separates real from fake, as
  BCE's does. G's loss, -E[D(G(z))], can have either sign and is not used.
- wgan-gp: x = |L_D|, L_D = E[D(G(z))] - E[D(x)] + 10 * GP: minus the critic's estimate of the Wasserstein
  distance, plus its gradient penalty. |L_D| is 0 when the critic is 1-Lipschitz and finds no distance between
  real and fake images, and grows with the distance it finds or with its penalty. G's loss, -E[D(G(z))], has an
  arbitrary offset and is not used.

Edge cases, so that F is always finite and never raises: a loss of exactly 0 gives 1/0 = +inf and tanh(+inf) = 1,
the formula's limit; a NaN or infinite loss (training diverged), or a negative one where none can be, gives a loss
term of 0; a parameter count of 0 gives a size term of 1 (the limit).

The three terms are the same formula on different quantities: a population that mixes losses compares them on
that footing (bce sums two inverses, the others one), not on sample quality. Like the reference, the bce and hinge
terms rise as D's loss falls, so a D that beats its G scores high; the wgan-gp term falls instead.

A chromosome whose training failed, diverged, timed out or whose task was lost scores fitness.failed (evaluate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from neuroevo.config import FitnessConfig

if TYPE_CHECKING:  # the driver never imports torch
    from neuroevo.train import TrainResult


def loss_term(d_loss: float, g_loss: float, loss: str = "bce") -> float:
    losses = {"bce": (d_loss, g_loss), "hinge": (d_loss,), "wgan-gp": (abs(d_loss),)}[loss]
    if not all(math.isfinite(x) and x >= 0 for x in losses):
        return 0.0
    inverse = sum(math.inf if x == 0 else 1.0 / x for x in losses)
    return math.tanh(0.01 * inverse)


def size_term(params_g: int, params_d: int, scale: float) -> float:
    total = params_g + params_d
    return 1.0 if total <= 0 else math.tanh(scale / total)


def fitness(d_loss: float, g_loss: float, params_g: int, params_d: int, cfg: FitnessConfig, loss: str = "bce") -> float:
    return cfg.lam * loss_term(d_loss, g_loss, loss) + cfg.gamma * size_term(params_g, params_d, cfg.scale)


@dataclass(frozen=True)
class Evaluation:
    """A chromosome's verdict for one generation, computed once; its log row and selection both read it."""
    status: str  # ok | failed | oom | diverged | timeout | lost
    error: str  # "" when ok
    fitness: float


def evaluate(result: TrainResult | None, cfg: FitnessConfig, loss: str = "bce",
             failure: tuple[str, str] = ("failed", "")) -> Evaluation:
    """The evaluation of a training `result`, or of a task that returned none (result None; failure: its status
    and error)."""
    if result is None:
        return Evaluation(*failure, cfg.failed)
    if result.status != "ok":
        return Evaluation(result.status, result.error, cfg.failed)
    return Evaluation("ok", "", fitness(result.d_loss, result.g_loss, result.params_g, result.params_d, cfg, loss))
