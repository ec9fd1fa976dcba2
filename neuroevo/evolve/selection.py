"""Who survives a generation, and who is born into the next. Pure functions of fitness, chromosomes and a random
generator.

Every strategy keeps the evolve.elite_fraction fittest unchanged; the strategy says how the other places are filled:
- random (the reference): fresh random chromosomes (population.fresh_members);
- mutation: each a mutant (registry.mutate) of an elite drawn uniformly;
- crossover: each a cross (registry.crossover) of two distinct elites drawn uniformly;
- tournament: each a mutant of a tournament winner: the fittest of evolve.tournament_size members drawn from the
  whole generation, so that good non-elites have children too.
A population of one is a baseline: its one member is the elite and no place is left to fill, whatever the strategy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, TypeVar

import numpy as np

from neuroevo.evolve import ranking
from neuroevo.space import registry
from neuroevo.space.chromosome import Chromosome
from neuroevo.space.registry import SpaceSection

T = TypeVar("T")

OPERATORS = ("seed", "random", "elite", "mutation", "crossover", "tournament")


# front and crowding: NSGA-II's, per member, with fitness.kind pareto (None otherwise); rung: the rung each member
# reached, with evolve.rungs (None otherwise); see ranking.order.


def rank(members: Sequence[T], fitness: Sequence[float], ids: Sequence[str], front: Sequence[int] | None = None,
         crowding: Sequence[float] | None = None, rung: Sequence[int] | None = None) -> list[T]:
    """Best first, as ranking.order ranks one generation (ties by chromosome id)."""
    return [members[i] for i in ranking.order(fitness, chromosome_id=ids, front=front, crowding=crowding, rung=rung)]


def elites(members: Sequence[T], fitness: Sequence[float], ids: Sequence[str], n_elite: int,
           front: Sequence[int] | None = None, crowding: Sequence[float] | None = None,
           rung: Sequence[int] | None = None) -> list[T]:
    """The n_elite fittest, kept unchanged by every strategy."""
    return rank(members, fitness, ids, front, crowding, rung)[:n_elite]


def tournament(fitness: Sequence[float], ids: Sequence[str], size: int, rng: np.random.Generator,
               front: Sequence[int] | None = None, crowding: Sequence[float] | None = None,
               rung: Sequence[int] | None = None) -> int:
    """The index of the fittest of `size` members drawn without replacement (ties broken by id)."""
    entrants = rng.choice(len(fitness), size=size, replace=False)

    def pick(keys):
        return None if keys is None else [keys[i] for i in entrants]

    best = ranking.order(pick(fitness), chromosome_id=pick(ids), front=pick(front), crowding=pick(crowding),
                         rung=pick(rung))[0]
    return int(entrants[best])


@dataclass(frozen=True)
class Child:
    chromosome: Chromosome
    parents: tuple[str, ...]  # chromosome ids
    operator: str  # mutation | crossover | tournament; random when no new child was found
    rejected: int  # children drawn and rejected (over max_params, or already in the generation) before this one


def breed(strategy: str, population: Sequence[Chromosome], fitness: Sequence[float], n_elite: int, count: int,
          space: SpaceSection, rng: np.random.Generator, tournament_size: int = 3,
          max_tries: int = 100, front: Sequence[int] | None = None,
          crowding: Sequence[float] | None = None, rung: Sequence[int] | None = None) -> list[Child]:
    """`count` children for the places after the elites, by the strategy mutation, crossover or tournament.

    A child over space.max_params, or equal to a member of this generation or to an earlier child, is drawn again;
    after max_tries such draws a fresh random chromosome takes the place (operator "random").
    """
    ids = [ch.id for ch in population]
    parents = elites(population, fitness, ids, n_elite, front, crowding, rung)
    taken = set(ids)
    children = []
    for _ in range(count):
        for rejected in range(max_tries):
            if strategy == "mutation":
                p = parents[rng.integers(len(parents))]
                child, chosen = registry.mutate(p, space, rng), (p,)
            elif strategy == "crossover":
                i, j = rng.choice(len(parents), size=2, replace=False)
                chosen = (parents[i], parents[j])
                child = registry.crossover(*chosen, rng)
            elif strategy == "tournament":
                p = population[tournament(fitness, ids, tournament_size, rng, front, crowding, rung)]
                child, chosen = registry.mutate(p, space, rng), (p,)
            else:
                raise ValueError(f"unknown strategy {strategy!r}")
            if child.id not in taken and (space.max_params is None or sum(registry.param_counts(child)) <= space.max_params):
                children.append(Child(child, tuple(p.id for p in chosen), strategy, rejected))
                break
        else:
            child, resampled = registry.sample(space, population[0].image_size, population[0].image_channels, rng)
            children.append(Child(child, (), "random", max_tries + resampled))
        taken.add(children[-1].chromosome.id)
    return children
