"""Relations between config keys that field types cannot express: lambda + gamma = 1, elites that fit the
population, a fitness that has the measurements it scores; and the bounds that keep a run within what the driver can
hold. Each search space checks its own keys (space/<name>.py: check). Every problem is a one-line ConfigError naming
the key, before Ray starts or anything is written."""

from __future__ import annotations

import math
from typing import Any

from neuroevo.config.schema import (
    AUTO_SAMPLES,
    EvolveConfig,
    FitnessConfig,
    QualityConfig,
    RunConfig,
)
from neuroevo.errors import ConfigError
from neuroevo.space import registry

# The run seed enters numpy's SeedSequence (population.task_seed; every generator of the run is seeded with
# [seed, generation, stream]), which takes any whole number >= 0 and refuses a negative one. One 32-bit word is
# the range that numpy's legacy seeding and most other tools accept too, so a run's seed can be handed on anywhere.
MAX_SEED = 2**32

# The largest population one driver draws, holds and logs: drawing takes 0.2-10 ms a member on one core (the presets;
# imagenet's max_params rejects several draws a member), state.json holds 0.7-3 KB a member and is rewritten every
# generation, and the driver keeps every member's row and result until its generation is logged. At 100,000 a
# generation's draw takes 20 s to 17 min and its state 70-300 MB; a larger population would look like a hang.
MAX_POPULATION = 100_000


def check(cfg: RunConfig) -> None:
    """Relations between keys that field types cannot express; the search space checks its own keys."""
    if not 0 <= cfg.seed < MAX_SEED:
        raise ConfigError(f"seed: expected a whole number from 0 to 2^32 - 1 ({MAX_SEED - 1}), got {cfg.seed}")
    if not cfg.out_dir.strip():
        raise ConfigError(f"out_dir: expected the folder to keep runs in, e.g. runs (got {cfg.out_dir!r})")
    if not math.isclose(cfg.fitness.lam + cfg.fitness.gamma, 1.0):
        raise ConfigError(f"fitness.lam + fitness.gamma: must equal 1 (got {cfg.fitness.lam} + {cfg.fitness.gamma})")
    if cfg.data.source in ("folder", "imagenet") and not cfg.data.root:
        raise ConfigError(f"data.root: required when data.source is {cfg.data.source} (a folder of class sub-folders)")
    registry.of(cfg.space.name).check(cfg.space, cfg.data.image_size, cfg.data.channels, cfg.train.epochs)
    s = cfg.space
    if s.batch_size < 2:  # BatchNorm's batch statistics need two images; every seed-v1 block has BatchNorm
        raise ConfigError(f"space.batch_size: expected at least 2 (BatchNorm needs two images a batch), got {s.batch_size}")
    if cfg.data.subset_pick == "random" and cfg.data.subset is None:
        raise ConfigError("data.subset_pick: random needs data.subset, the number of images to draw")
    if cfg.data.subset is not None and cfg.data.subset < s.batch_size:
        raise ConfigError(f"data.subset: {cfg.data.subset} images is fewer than one batch (space.batch_size={s.batch_size})")
    _check_evolve(cfg.evolve, s)
    _check_quality(cfg.quality, cfg.fitness)
    if cfg.evolve.rungs > 1 and (cfg.fitness.kind == "pareto" or cfg.quality.evaluate == "top_k"):
        raise ConfigError(f"evolve.rungs: {cfg.evolve.rungs} rungs promote by each chromosome's own fitness as its "
                          f"task comes in; it needs fitness.kind other than pareto and quality.evaluate other than "
                          f"top_k (got {cfg.fitness.kind}, {cfg.quality.evaluate})")
    if cfg.tracking.mlflow_experiment is not None and not cfg.tracking.mlflow:
        raise ConfigError(f"tracking.mlflow_experiment: {cfg.tracking.mlflow_experiment!r} is set, but tracking.mlflow "
                          f"is false; set tracking.mlflow: true to log to MLflow")


def _check_quality(q: QualityConfig, f: FitnessConfig) -> None:
    if f.kind != "reference" and q.evaluate == "off":
        raise ConfigError(f"fitness.kind: {f.kind} scores sample quality, and quality.evaluate is off; set "
                          f"quality.evaluate: all (or top_k)")
    fewest = min(AUTO_SAMPLES.values()) if q.samples == "auto" else q.samples
    if fewest < q.kid_subset_size:
        given = f"auto ({fewest} images on the CPU)" if q.samples == "auto" else q.samples
        raise ConfigError(f"quality.samples: {given} is fewer than KID's subsets of quality.kid_subset_size="
                          f"{q.kid_subset_size}; raise it or lower quality.kid_subset_size")
    if q.reference_images is not None and q.reference_images < q.kid_subset_size:
        raise ConfigError(f"quality.reference_images: {q.reference_images} is fewer than KID's subsets of "
                          f"quality.kid_subset_size={q.kid_subset_size}")


def _check_evolve(e: EvolveConfig, space: Any) -> None:
    n_elite, population = elite_count(e), e.population
    if population > MAX_POPULATION:
        raise ConfigError(f"evolve.population: {population:,} is more than one driver can draw and hold; at most "
                          f"{MAX_POPULATION:,}")
    if e.mode == "steady_state" and (e.strategy != "random" or inheritance(e) != "none"):
        raise ConfigError(f"evolve.mode: steady_state starts the next generation's newcomers before this one's fitness "
                          f"is known, so it needs evolve.strategy: random, evolve.keep_weights: false and "
                          f"evolve.inherit: none (got {e.strategy}, {str(e.keep_weights).lower()}, {e.inherit})")
    if e.rungs > 1 and e.mode == "steady_state":
        raise ConfigError("evolve.rungs: successive halving needs each rung's fitness before the next rung starts; "
                          "it needs evolve.mode: generational")
    _check_seeds(e, space)
    if population == 1:  # elite_count: the one chromosome is kept; no place is left to breed or draw into
        return
    if n_elite < 1:
        raise ConfigError(f"evolve.elite_fraction: {e.elite_fraction} of a population of {population} keeps no elite (needs at least 1)")
    if n_elite >= population:
        raise ConfigError(f"evolve.elite_fraction: {e.elite_fraction} keeps the whole population of {population}")
    if e.strategy == "crossover" and n_elite < 2:
        raise ConfigError(f"evolve.strategy: crossover needs at least 2 elites to cross, and evolve.elite_fraction "
                          f"{e.elite_fraction} of {population} keeps {n_elite}")
    if e.strategy == "tournament" and e.tournament_size > population:
        raise ConfigError(f"evolve.tournament_size: {e.tournament_size} is larger than the population of {population}")


def _check_seeds(e: EvolveConfig, space: Any) -> None:
    for name in e.seed_chromosomes:
        if registry.SEEDS[name][0] != space.name:
            raise ConfigError(f"evolve.seed_chromosomes: {name} is a {registry.SEEDS[name][0]} chromosome; it needs "
                              f"space.name: {registry.SEEDS[name][0]}")
    if len(set(e.seed_chromosomes)) < len(e.seed_chromosomes):
        raise ConfigError(f"evolve.seed_chromosomes: {list(e.seed_chromosomes)} names a chromosome twice")
    if len(e.seed_chromosomes) > e.population:
        raise ConfigError(f"evolve.seed_chromosomes: {len(e.seed_chromosomes)} seeds do not fit a population of "
                          f"{e.population}")


def elite_count(evolve: EvolveConfig) -> int:
    """Elites kept per generation: elite_fraction of the population, rounded half up.

    A population of one is a baseline: its one chromosome is the elite of every generation, whatever
    elite_fraction says, so the same architecture trains on (from its own weights with evolve.keep_weights, else
    afresh with each generation's seed) and nothing new is drawn."""
    if evolve.population == 1:
        return 1
    return math.floor(evolve.elite_fraction * evolve.population + 0.5)


def inheritance(evolve: EvolveConfig) -> str:
    """Whose weights the next generation starts from: none | elites | all (evolve.inherit; keep_weights: true is
    inherit: elites)."""
    return "elites" if evolve.inherit == "none" and evolve.keep_weights else evolve.inherit
