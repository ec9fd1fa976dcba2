"""The search spaces by name, and every question about a chromosome that its space answers.

A space is one module of this package: its config section (the `space` keys, tagged by `name`), its chromosome type
and everything that knows its genes: `from_json`, `check` (validity of its config keys, as one-line ConfigErrors),
`sample`, `plan` (the layer plan, layer_plan.LayerPlan), `moves` (mutation), `GROUPS` (crossover), `losses` (the
losses it draws) and `SIZE_KEYS`. A new space is one new module here and its entry in SPACES; nothing outside this
package changes.
"""

from __future__ import annotations

import json
from functools import lru_cache
from types import ModuleType

import numpy as np

from neuroevo.space import seed_v1, v2, variation
from neuroevo.space.chromosome import Chromosome
from neuroevo.space.layer_plan import LayerPlan

SPACES: dict[str, ModuleType] = {seed_v1.NAME: seed_v1, v2.NAME: v2}
# each space's config section, by its `space.name` (config/schema.py makes the union of them)
SECTIONS = {seed_v1.NAME: seed_v1.SeedV1Space, v2.NAME: v2.V2Space}
SpaceSection = seed_v1.SeedV1Space | v2.V2Space  # a config's `space` section, of any space
DEFAULT = seed_v1.NAME  # a config or chromosome that names no space: the reference experiment's

# The fixed chromosomes evolve.seed_chromosomes may name: (their space, their maker).
SEEDS = {"dcgan": (v2.NAME, v2.dcgan), "dcgan_sn": (v2.NAME, v2.dcgan_sn)}


def of(name: str) -> ModuleType:
    """The module of the space `name` (a chromosome's `space`, a config's `space.name`)."""
    return SPACES[name]


def from_json(text: str) -> Chromosome:
    """A chromosome of any space from its JSON (a seed-v1 chromosome's JSON names no space)."""
    return of(json.loads(text).get("space", DEFAULT)).from_json(text)


@lru_cache(maxsize=8192)
def plan(ch: Chromosome) -> LayerPlan:
    """The layer plan of a chromosome of any search space (chromosomes are frozen, so a plan is made once)."""
    return of(ch.space).plan(ch)


def param_counts(ch: Chromosome) -> tuple[int, int]:
    """Trainable parameters of (G, D), from the layer plan; model.py builds exactly these."""
    return plan(ch).param_counts


def seed(name: str, image_size: int, image_channels: int, batch_size: int) -> Chromosome:
    """A fixed chromosome that evolve.seed_chromosomes may name (SEEDS), e.g. dcgan."""
    return SEEDS[name][1](image_size, image_channels, batch_size)


class SpaceTooTight(RuntimeError):
    """max_params rejects nearly every chromosome of the space."""


def sample_one(space, image_size: int, image_channels: int, rng: np.random.Generator) -> Chromosome:
    """One chromosome uniformly from the space (learning rates log-uniform), ignoring max_params."""
    return of(space.name).sample(space, image_size, image_channels, rng)


def losses(space) -> tuple[str, ...]:
    """The losses the space's chromosomes can have."""
    return of(space.name).losses(space)


def sample(space, image_size: int, image_channels: int, rng: np.random.Generator,
           max_tries: int = 10_000) -> tuple[Chromosome, int]:
    """A chromosome within space.max_params, and how many larger ones were drawn and rejected first."""
    for rejected in range(max_tries):
        ch = sample_one(space, image_size, image_channels, rng)
        if space.max_params is None or sum(param_counts(ch)) <= space.max_params:
            return ch, rejected
    raise SpaceTooTight(
        f"space.max_params: {max_tries} samples in a row had more than {space.max_params} parameters; "
        f"raise it or narrow {of(space.name).SIZE_KEYS}")


def mutate(ch: Chromosome, space, rng: np.random.Generator) -> Chromosome:
    """A mutant of `ch`: one of the changes its space allows (variation.mutate)."""
    return variation.mutate(of(ch.space).moves(ch, space, rng), rng)


def crossover(a: Chromosome, b: Chromosome, rng: np.random.Generator) -> Chromosome:
    """A child of `a` and `b`, of one space, by their space's gene groups (variation.crossover)."""
    return variation.crossover(a, b, of(a.space).GROUPS, rng)
