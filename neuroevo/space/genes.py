"""Genes: what every search space's chromosome types share (canonical JSON, a content id, the optimiser genes) and
the draws every space's sampler and mutation moves make. A leaf: it knows no space.

Pure data and pure functions: no torch here, so the driver can sample, hash and size chromosomes cheaply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np


@dataclass(frozen=True)
class Optimiser:
    name: str  # sgd | adam
    lr: float
    momentum: float  # SGD's momentum, or Adam's beta1 (beta2 is 0.999)
    decay_epoch: int = 0  # 0: a constant learning rate; else lr x decay_factor from this epoch on
    decay_factor: float = 1.0


@dataclass(frozen=True)
class Recipe:
    """The practices of the modern small-scale GAN recipe, as the training step reads them; all off is the DCGAN
    step. Search space v2 has them as genes; seed-v1 has none (its chromosomes' `recipe` is None)."""

    spectral_norm: str = "none"  # none | d | both: D's layers spectral-normalised, or G's and D's
    g_ema: float = 0.0  # decay of the average of G's weights that samples are drawn from; 0: none
    augment: str = "none"  # none | DiffAugment policies joined by commas, e.g. color,translation,cutout
    r1_gamma: float = 0.0  # weight of the R1 penalty on real images; 0: none
    n_critic: int = 1  # D steps per G step


RECIPE_OFF = {f.name: f.default for f in dataclasses.fields(Recipe)}


class Genes:
    """What every chromosome type shares: canonical JSON and an id hashed from it."""

    # genes written only where they differ from these values: a chromosome that leaves them so has the JSON, and so
    # the id, it would have without them
    OMITTED: ClassVar[dict[str, object]] = {}

    def to_json(self) -> str:
        genes = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.OMITTED or v != self.OMITTED[k]}
        return json.dumps(genes, sort_keys=True, separators=(",", ":"))

    @cached_property
    def id(self) -> str:
        """Content hash: the same genes always give the same id, across runs and machines."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]


# Drawing genes: shared by every space's sampler and mutation moves.


def pick(rng: np.random.Generator, options: tuple | list):
    return options[int(rng.integers(len(options)))]


def pick_drawn(rng: np.random.Generator, options: tuple | list):
    """pick, but a single option is taken without a draw: a gene that a config does not search (a one-element
    list) leaves every other draw where it would be without that gene."""
    return options[0] if len(options) == 1 else pick(rng, options)


def int_in(rng: np.random.Generator, lo_hi: tuple[int, int]) -> int:
    return int(rng.integers(lo_hi[0], lo_hi[1] + 1))


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
