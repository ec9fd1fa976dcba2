"""Variation: children of chosen chromosomes. Pure functions of (parents, what their space allows, random generator);
no torch, and no space: registry.mutate and registry.crossover pass in what the chromosome's space says.

A child is valid by construction, as a sampled chromosome is: each space says which single changes its chromosomes
allow (space/<name>.py: moves) and which gene groups may be swapped whole (GROUPS). Neither operator checks
max_params: selection.breed does.

A move is a closure, built for every change the chromosome allows; mutate() runs one of them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from neuroevo.space.chromosome import Chromosome
from neuroevo.space.genes import pick

Move = Callable[[], Chromosome]
LR_FACTOR = 2.0  # a learning-rate perturbation multiplies by a log-uniform factor in [1/2, 2]


def mutate(moves: dict[str, list[Move]], rng: np.random.Generator) -> Chromosome:
    """One change, its kind drawn uniformly among those possible: a gene redrawn from the space (always to another
    value; a move of a stride 2 or a pooling counts as one), a block or FC layer added or removed, or both learning
    rates perturbed (x [1/2, 2], kept in their range). `moves`: the space's moves of the parent, by kind."""
    kinds = [k for k in ("gene", "add", "remove", "lr") if moves[k]]
    options = moves[pick(rng, kinds)]
    return pick(rng, options)()


def crossover(a: Chromosome, b: Chromosome, groups: dict[str, tuple], rng: np.random.Generator) -> Chromosome:
    """Half the time G of one parent with D of the other (the training genes of either, as a whole); otherwise
    gene-wise: each gene group from either parent. `groups`: the space's gene groups (GROUPS); its optional part
    "recipe" goes with the training genes, and gene-wise each of its groups is drawn for only where the parents
    differ in it, so that parents that both leave the recipe off cross as they would without it."""
    recipe = groups.get("recipe", ())
    if rng.random() < 0.5:
        g_parent, d_parent = (a, b) if rng.random() < 0.5 else (b, a)
        child = dataclasses.replace(g_parent, **{f: getattr(d_parent, f) for group in groups["d"] for f in group})
        training = a if rng.random() < 0.5 else b
        return dataclasses.replace(child, **{f: getattr(training, f) for group in (*groups["training"], *recipe)
                                             for f in group})
    taken = [group for part in ("g", "d", "training") for group in groups[part] if rng.random() < 0.5]
    taken += [group for group in recipe if _differ(a, b, group) and rng.random() < 0.5]
    return dataclasses.replace(a, **{f: getattr(b, f) for group in taken for f in group})


def _differ(a: Chromosome, b: Chromosome, group: tuple[str, ...]) -> bool:
    return any(getattr(a, f) != getattr(b, f) for f in group)


# Helpers for the spaces' moves.


def other(rng: np.random.Generator, options, current) -> list:
    """A value among `options` other than `current` (as a one-element list), or [] when there is none."""
    rest = [o for o in options if o != current]
    return [pick(rng, rest)] if rest else []


def replace_at(items: tuple, i: int, item) -> tuple:
    return items[:i] + (item,) + items[i + 1:]


def insert_at(items: tuple, i: int, item) -> tuple:
    return items[:i] + (item,) + items[i:]


def remove_at(items: tuple, i: int) -> tuple:
    return items[:i] + items[i + 1:]


def perturb(rng: np.random.Generator, lr: float, lo: float, hi: float) -> float:
    return float(min(max(lr * math.exp(rng.uniform(-math.log(LR_FACTOR), math.log(LR_FACTOR))), lo), hi))
