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

import numpy as np


@dataclass(frozen=True)
class Optimiser:
    name: str  # sgd | adam
    lr: float
    momentum: float  # SGD's momentum, or Adam's beta1 (beta2 is 0.999)
    decay_epoch: int = 0  # 0: a constant learning rate; else lr x decay_factor from this epoch on
    decay_factor: float = 1.0


class Genes:
    """What every chromosome type shares: canonical JSON and an id hashed from it."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    @cached_property
    def id(self) -> str:
        """Content hash: the same genes always give the same id, across runs and machines."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]


# Drawing genes: shared by every space's sampler and mutation moves.


def pick(rng: np.random.Generator, options: tuple | list):
    return options[int(rng.integers(len(options)))]


def int_in(rng: np.random.Generator, lo_hi: tuple[int, int]) -> int:
    return int(rng.integers(lo_hi[0], lo_hi[1] + 1))


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
