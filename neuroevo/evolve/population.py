"""Who is in each generation: the first population, the next one from an evaluated generation, and each
member's training seed. Pure functions of the config, the run seed and fitness; no Ray, no torch.

Every random draw comes from a generator seeded with (run seed, generation, stream), so the same seed gives the
same members in every run, resumed or not.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from neuroevo.config import RunConfig, elite_count, inheritance
from neuroevo.evolve import selection
from neuroevo.space import registry
from neuroevo.space.chromosome import Chromosome

BRED = ("mutation", "crossover", "tournament")  # the operators whose children have parents to inherit from
_SAMPLE_STREAM = 1  # keeps the sampler's random stream apart from any other drawn from the run seed
_BREED_STREAM = 2  # the random stream of mutation, crossover and tournaments
_LOOK_STREAM = 3  # space_sample's, so that looking changes no member


@dataclass(frozen=True)
class Member:
    chromosome: Chromosome
    born_generation: int  # an elite carried into generation g has born_generation < g
    resampled: int  # chromosomes rejected for max_params before this one was drawn
    parents: tuple[str, ...] = ()  # chromosome ids; an elite's parent is itself, in the generation before
    operator: str = "random"  # what made it: seed | random | elite | mutation | crossover | tournament


@dataclass(frozen=True)
class Evaluated:
    """A member of a trained generation and how it scored: what selection reads (ranking.order)."""
    member: Member
    fitness: float
    front: int = 0  # fitness.kind pareto: NSGA-II's front (0 = non-dominated); 0 for every member otherwise
    crowding: float = 0.0  # and its crowding distance within the front
    rung: int = 0  # evolve.rungs: the last rung it trained in (0 for every member without rungs)


def task_seed(run_seed: int, generation: int, chromosome_id: str) -> int:
    """A training seed that depends only on the run seed, the generation and the chromosome."""
    ss = np.random.SeedSequence([run_seed, generation, int(chromosome_id, 16)])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))  # fits a signed int64


def fresh_members(cfg: RunConfig, generation: int, count: int) -> tuple[Member, ...]:
    """`count` new random chromosomes; the same (seed, generation) always gives the same ones."""
    rng = np.random.default_rng([cfg.seed, generation, _SAMPLE_STREAM])
    members = []
    for _ in range(count):
        ch, rejected = registry.sample(cfg.space, cfg.data.image_size, cfg.data.channels, rng)
        members.append(Member(ch, generation, rejected))
    return tuple(members)


def initial_population(cfg: RunConfig) -> tuple[Member, ...]:
    """Generation 0: the seed chromosomes (evolve.seed_chromosomes), then random ones."""
    seeds = tuple(Member(registry.seed(name, cfg.data.image_size, cfg.data.channels, cfg.space.batch_size), 0, 0,
                         operator="seed") for name in cfg.evolve.seed_chromosomes)
    return seeds + fresh_members(cfg, 0, cfg.evolve.population - len(seeds))


def run_losses(cfg: RunConfig) -> set[str]:
    """Every loss a run's chromosomes can have: the space's, and its seed chromosomes' (taken as they are)."""
    seeds = {registry.seed(name, cfg.data.image_size, cfg.data.channels, cfg.space.batch_size).loss
             for name in cfg.evolve.seed_chromosomes}
    return seeds | set(registry.losses(cfg.space))


def space_sample(cfg: RunConfig, count: int = 64) -> tuple[Chromosome, ...]:
    """`count` chromosomes of the space within max_params, from a stream of the run seed that no generation
    draws from: a cheap look at what the space yields, before any training."""
    rng = np.random.default_rng([cfg.seed, _LOOK_STREAM])
    return tuple(registry.sample(cfg.space, cfg.data.image_size, cfg.data.channels, rng)[0] for _ in range(count))


def bred_members(cfg: RunConfig, generation: int, evaluated: Sequence[Evaluated]) -> tuple[Member, ...]:
    """The non-elite places of `generation` by the strategy evolve.strategy (not random), from the generation
    before; the same (seed, generation) and fitness always give the same children."""
    rng = np.random.default_rng([cfg.seed, generation, _BREED_STREAM])
    n_elite = elite_count(cfg.evolve)
    children = selection.breed(cfg.evolve.strategy, [e.member.chromosome for e in evaluated],
                               [e.fitness for e in evaluated], n_elite, cfg.evolve.population - n_elite, cfg.space,
                               rng, cfg.evolve.tournament_size, front=[e.front for e in evaluated],
                               crowding=[e.crowding for e in evaluated], rung=[e.rung for e in evaluated])
    return tuple(Member(c.chromosome, generation, c.rejected, c.parents, c.operator) for c in children)


def elites(cfg: RunConfig, evaluated: Sequence[Evaluated]) -> list[Member]:
    """The elite_count fittest members of a generation, kept unchanged into the next."""
    members = [e.member for e in evaluated]
    return selection.elites(members, [e.fitness for e in evaluated], [m.chromosome.id for m in members],
                            elite_count(cfg.evolve), [e.front for e in evaluated], [e.crowding for e in evaluated],
                            [e.rung for e in evaluated])


def next_population(cfg: RunConfig, generation: int, evaluated: Sequence[Evaluated]) -> tuple[Member, ...]:
    """Generation `generation`'s members: the elites of the one before, then the strategy's newcomers (none in a
    population of one, whose one member is its elite: config.elite_count)."""
    kept = tuple(replace(m, parents=(m.chromosome.id,), operator="elite") for m in elites(cfg, evaluated))
    if cfg.evolve.strategy == "random":
        return kept + fresh_members(cfg, generation, cfg.evolve.population - elite_count(cfg.evolve))
    return kept + bred_members(cfg, generation, evaluated)


def early_members(cfg: RunConfig, generation: int) -> tuple[Member, ...]:
    """The members of `generation` whose genes depend on no fitness: the fresh chromosomes that replace the
    non-elites (evolve.strategy random). steady_state mode trains them before the generation before them is
    finished."""
    return fresh_members(cfg, generation, cfg.evolve.population - elite_count(cfg.evolve))


def inherits(cfg: RunConfig, generation: int, m: Member) -> bool:
    """Whether a member of `generation` starts from its parents' trained weights (evolve.inherit): an elite
    continues from its own (elites, all); a child of mutation, crossover or a tournament takes its parents' (all)."""
    how = inheritance(cfg.evolve)
    if m.born_generation < generation:
        return how != "none"
    return how == "all" and m.operator in BRED


def weights_kept(cfg: RunConfig, generation: int, evaluated: Sequence[Evaluated]) -> list[Member]:
    """The members of a trained generation whose weights the next one starts from: none, the elites (inherit
    elites), or every parent of a member of the next generation (all: the elites, and with evolve.strategy
    tournament the winners, who may be any member). The next generation is drawn here as next_population draws it,
    from the same seed and fitness, so these are its parents exactly."""
    how = inheritance(cfg.evolve)
    if how == "none":
        return []
    if how == "elites":
        return elites(cfg, evaluated)
    parents = {p for m in next_population(cfg, generation + 1, evaluated) for p in m.parents}
    return [e.member for e in evaluated if e.member.chromosome.id in parents]
