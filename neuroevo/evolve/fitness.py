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

fitness.kind quality replaces the loss term by a quality term of the sample quality Q, the FID or KID of the
chromosome's generator (fitness.quality_metric; quality.py):

    F = lam * exp(-Q / tau) + gamma * tanh(S / (params_G + params_D))

with tau = fitness.fid_scale (100) or fitness.kid_scale (0.1); a negative KID (the unbiased estimate of a
distance near 0) counts as 0, and a chromosome whose quality was not measured (quality.evaluate top_k) has a
quality term of 0. fitness.kind pareto ranks a generation by NSGA-II on the two objectives (Q, params_G +
params_D), both minimised (rank_generation, pareto.py); its fitness is the quality formula's.

A chromosome whose training failed, diverged, timed out or whose task was lost scores fitness.failed (evaluate).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from neuroevo.config import FitnessConfig
from neuroevo.evolve import pareto

if TYPE_CHECKING:
    from neuroevo.train.results import Quality, TrainResult


def _read_losses(d_loss: float, g_loss: float, loss: str) -> tuple[float, ...]:
    """The losses whose inverses the loss term sums, by the chromosome's loss."""
    return {"bce": (d_loss, g_loss), "hinge": (d_loss,), "wgan-gp": (abs(d_loss),)}[loss]


def loss_term(d_loss: float, g_loss: float, loss: str = "bce") -> float:
    losses = _read_losses(d_loss, g_loss, loss)
    if not all(math.isfinite(x) and x >= 0 for x in losses):
        return 0.0
    inverse = sum(math.inf if x == 0 else 1.0 / x for x in losses)
    return math.tanh(0.01 * inverse)


def scored_loss(d_loss: float, g_loss: float, loss: str = "bce") -> float:
    """The one loss the loss term scores, lower being fitter: 1 / (1/L_D + 1/L_G) for bce, L_D for hinge, |L_D| for
    wgan-gp; NaN where the term is 0 for a loss below 0 or not finite."""
    losses = _read_losses(d_loss, g_loss, loss)
    if not all(math.isfinite(x) and x >= 0 for x in losses):
        return math.nan
    return 0.0 if 0 in losses else 1.0 / sum(1.0 / x for x in losses)


def size_term(params_g: int, params_d: int, scale: float) -> float:
    total = params_g + params_d
    return 1.0 if total <= 0 else math.tanh(scale / total)


def fitness(d_loss: float, g_loss: float, params_g: int, params_d: int, cfg: FitnessConfig, loss: str = "bce") -> float:
    return cfg.lam * loss_term(d_loss, g_loss, loss) + cfg.gamma * size_term(params_g, params_d, cfg.scale)


SATURATED = 0.999  # a size term above this for every chromosome: tanh(P) no longer tells their sizes apart


def _round(x: float) -> float:
    """x to one significant digit, a value to suggest."""
    return float(f"{x:.0e}")


def _value(x: float) -> str:
    return f"{x:.0f}" if x >= 1 else f"{x:g}"


def scale_warning(params: Sequence[int], cfg: FitnessConfig) -> str | None:
    """Why fitness.scale cannot rank the chromosomes by size, or None: tanh(P) saturates (P >> 1) for every
    one of `params` (G + D parameter counts of a sample of what the space draws within space.max_params). The
    fix puts P = 1 at the median one. fitness.kind pareto ranks by parameters themselves, not by this term."""
    if not params or cfg.gamma == 0 or cfg.kind == "pareto":
        return None
    largest = max(params)
    if size_term(largest, 0, cfg.scale) <= SATURATED:
        return None
    return (f"fitness.scale {cfg.scale:g} saturates the size term: tanh(S / params) > {SATURATED} for every "
            f"chromosome the space draws (at most {largest:,} parameters), so size cannot rank them; set "
            f"fitness.scale={_value(_round(float(np.median(params))))} (P = 1 at the median chromosome)")


def loss_warning(trained: Sequence[tuple[float, float, str, int]], cfg: FitnessConfig) -> str | None:
    """Why the reference fitness ranked a generation by size alone, or None: for every chromosome that trained,
    (d_loss, g_loss, loss, params) in `trained`, the loss term's share lam * loss_term is below a hundredth of
    the size term's gamma * size_term. The fix makes the two shares equal at the median chromosome."""
    if cfg.kind != "reference" or cfg.lam == 0 or cfg.gamma == 0 or not trained:
        return None
    shares = [(cfg.lam * loss_term(d, g, loss), cfg.gamma * size_term(p, 0, cfg.scale)) for d, g, loss, p in trained]
    if any(lo >= size / 100 for lo, size in shares):
        return None
    worst = max(lo for lo, _ in shares)
    low = float(np.median([lo for lo, _ in shares]))
    head = (f"in generation 0 the loss term ({cfg.lam:g} x tanh(0.01 x sum 1/loss), at most {worst:.2g}) is below a "
            f"hundredth of the size term ({cfg.gamma:g} x tanh(P), at least "
            f"{min(size for _, size in shares):.2g}) for all {len(shares)} chromosomes that trained: size alone ranks them")
    if low <= 0:
        return f"{head}; set fitness.kind=quality (with quality.evaluate=all) to rank by samples"
    fix = float(np.median([p for *_, p in trained])) * math.atanh(low / cfg.gamma)
    return f"{head}; set fitness.scale={_value(_round(fix))} to weigh the two alike"


def quality_metric(quality: Quality | None, cfg: FitnessConfig) -> float | None:
    """Q: the FID or KID (fitness.quality_metric) of a measured generator; None when not measured."""
    return None if quality is None else quality.fid if cfg.quality_metric == "fid" else quality.kid


def quality_term(quality: Quality | None, cfg: FitnessConfig) -> float:
    """exp(-Q / tau), in (0, 1]; 0 when not measured."""
    q = quality_metric(quality, cfg)
    if q is None or not math.isfinite(q):
        return 0.0
    return math.exp(-max(q, 0.0) / (cfg.fid_scale if cfg.quality_metric == "fid" else cfg.kid_scale))


@dataclass(frozen=True)
class Evaluation:
    """A chromosome's verdict for one generation, computed once; its log row and selection both read it."""
    status: str  # ok | failed | oom | diverged | timeout | lost
    error: str  # "" when ok
    fitness: float
    front: int | None = None  # fitness.kind pareto: NSGA-II's front in its generation (0 = non-dominated)
    crowding: float = 0.0  # and the crowding distance within it


def evaluate(result: TrainResult | None, cfg: FitnessConfig, loss: str = "bce",
             failure: tuple[str, str] = ("failed", ""), quality: Quality | None = None) -> Evaluation:
    """The evaluation of a training `result` (and its generator's `quality`, where measured), or of a task that
    returned none (result None; failure: its status and error)."""
    if result is None:
        return Evaluation(*failure, cfg.failed)
    if result.status != "ok":
        return Evaluation(result.status, result.error, cfg.failed)
    if cfg.kind == "reference":
        return Evaluation("ok", "", fitness(result.d_loss, result.g_loss, result.params_g, result.params_d, cfg, loss))
    size = size_term(result.params_g, result.params_d, cfg.scale)
    return Evaluation("ok", "", cfg.lam * quality_term(quality, cfg) + cfg.gamma * size)


def rank_generation(evaluations: list[Evaluation], qualities: list[Quality | None], params: list[int],
                    cfg: FitnessConfig) -> list[Evaluation]:
    """fitness.kind pareto: each evaluation with its NSGA-II front and crowding distance on (Q, params) among the
    generation's chromosomes that trained and were measured; the others come after every front. Other kinds: as
    given."""
    if cfg.kind != "pareto":
        return evaluations
    scored = [i for i, (e, q) in enumerate(zip(evaluations, qualities))
              if e.status == "ok" and q is not None and math.isfinite(quality_metric(q, cfg))]
    objectives = np.array([[quality_metric(qualities[i], cfg), params[i]] for i in scored], dtype=float)
    fronts = pareto.fronts(objectives) if scored else np.zeros(0, dtype=int)
    distance = pareto.crowding(objectives, fronts) if scored else np.zeros(0)
    last = int(fronts.max()) + 1 if scored else 0
    ranked = [dataclasses.replace(e, front=last) for e in evaluations]
    for j, i in enumerate(scored):
        ranked[i] = dataclasses.replace(evaluations[i], front=int(fronts[j]), crowding=float(distance[j]))
    return ranked
