"""The search spaces, one module each. A space module holds its chromosome type and everything that knows its
genes: `from_json`, `check` (validity of its config keys, as one-line ConfigErrors), `sample`, `plan` (the layer
plan, architecture.Plan), `moves` (mutation), `GROUPS` (crossover), `losses` (the losses it draws) and `SIZE_KEYS`.

A new space is one new module here, its entry in SPACES, and its config class in config.py (tagged by `name`).
"""

from __future__ import annotations

from types import ModuleType

from neuroevo.spaces import seed_v1, v2

SPACES: dict[str, ModuleType] = {seed_v1.NAME: seed_v1, v2.NAME: v2}

# The fixed chromosomes evolve.seed_chromosomes may name: (their space, their maker).
SEEDS = {"dcgan": (v2.NAME, v2.dcgan)}


def of(name: str) -> ModuleType:
    """The module of the space `name` (a chromosome's `space`, a config's `space.name`)."""
    return SPACES[name]
