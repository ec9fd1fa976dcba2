"""The chromosome: a whole GAN as genes, and what every search space's chromosomes offer the rest of neuroevo.

A chromosome is a frozen dataclass of one search space (neuroevo/spaces/: seed_v1.Chromosome, v2.ChromosomeV2).
Downstream of the search spaces, code reads a chromosome only through the `Genome` protocol below and through its
layer plan (architecture.plan); its `space` names the space that made it, and the functions here ask that space.

Pure data and pure functions: no torch here, so the driver can sample, hash and size chromosomes cheaply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np

from neuroevo import architecture


@dataclass(frozen=True)
class Optimiser:
    name: str  # sgd | adam
    lr: float
    momentum: float  # SGD's momentum, or Adam's beta1 (beta2 is 0.999)
    decay_epoch: int = 0  # 0: a constant learning rate; else lr x decay_factor from this epoch on
    decay_factor: float = 1.0


class Genome(Protocol):
    """What every chromosome offers, whatever its space; its layers are architecture.plan(ch)."""

    space: str  # the search space that made it: a key of spaces.SPACES
    image_size: int
    image_channels: int
    batch_size: int
    loss: str  # bce | wgan-gp | hinge (losses.py)
    label_smoothing: bool  # bce only: D's target for real images is 0.9
    feature_matching: bool  # G's loss adds the distance between D's mean features on real and fake images
    separate_batches: bool  # D sees a real batch and a fake batch, rather than one mixed batch

    @property
    def id(self) -> str: ...

    @property
    def noise_shape(self) -> tuple[int, int, int]: ...

    @property
    def optimisers(self) -> tuple[Optimiser, Optimiser]: ...  # G's, D's

    def to_json(self) -> str: ...


class Genes:
    """What every chromosome type shares: canonical JSON and an id hashed from it."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    @cached_property
    def id(self) -> str:
        """Content hash: the same genes always give the same id, across runs and machines."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]


def from_json(text: str) -> Genome:
    """A chromosome of any space from its JSON (a seed-v1 chromosome's JSON names no space)."""
    from neuroevo import spaces

    return spaces.of(json.loads(text).get("space", "seed-v1")).from_json(text)


def param_counts(ch: Genome) -> tuple[int, int]:
    """Trainable parameters of (G, D), from the layer plan; model.py builds exactly these."""
    return architecture.param_counts(ch)


def seed(name: str, image_size: int, image_channels: int, batch_size: int) -> Genome:
    """A fixed chromosome that evolve.seed_chromosomes may name (spaces.SEEDS), e.g. dcgan."""
    from neuroevo import spaces

    return spaces.SEEDS[name][1](image_size, image_channels, batch_size)


# Drawing genes: shared by every space's sampler and mutation moves.


def pick(rng: np.random.Generator, options: tuple | list):
    return options[int(rng.integers(len(options)))]


def int_in(rng: np.random.Generator, lo_hi: tuple[int, int]) -> int:
    return int(rng.integers(lo_hi[0], lo_hi[1] + 1))


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


class SpaceTooTight(RuntimeError):
    """max_params rejects nearly every chromosome of the space."""


def sample_one(space, image_size: int, image_channels: int, rng: np.random.Generator) -> Genome:
    """One chromosome uniformly from the space (learning rates log-uniform), ignoring max_params."""
    from neuroevo import spaces

    return spaces.of(space.name).sample(space, image_size, image_channels, rng)


def losses(space) -> tuple[str, ...]:
    """The losses the space's chromosomes can have."""
    from neuroevo import spaces

    return spaces.of(space.name).losses(space)


def sample(space, image_size: int, image_channels: int, rng: np.random.Generator,
           max_tries: int = 10_000) -> tuple[Genome, int]:
    """A chromosome within space.max_params, and how many larger ones were drawn and rejected first."""
    from neuroevo import spaces

    for rejected in range(max_tries):
        ch = sample_one(space, image_size, image_channels, rng)
        if space.max_params is None or sum(param_counts(ch)) <= space.max_params:
            return ch, rejected
    raise SpaceTooTight(
        f"space.max_params: {max_tries} samples in a row had more than {space.max_params} parameters; "
        f"raise it or narrow {spaces.of(space.name).SIZE_KEYS}")
