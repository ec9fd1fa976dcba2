"""Resuming a run, in one place: the config it goes on with, the saved state checked against its logs (and repaired
where the logs allow), the logged generations to train again, and their populations read back from the Parquet rows
or drawn again as the run drew them.

Training is deterministic on the CPU and every seed derives from (run seed, generation, chromosome id), so a resumed
run logs the rows an uninterrupted one would. The run's lock (rundir.claim) is held before anything here writes.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from neuroevo import config
from neuroevo.config import RunConfig, flat
from neuroevo.errors import ConfigError, InputError
from neuroevo.evolve import fitness, population
from neuroevo.evolve.population import (
    Evaluated,
    Member,
    initial_population,
    next_population,
)
from neuroevo.store import fingerprints, logs, rundir, state
from neuroevo.train.results import Quality

# Keys a resumed run may change: they do not change which chromosomes are drawn or how they are scored (the
# fast-path switches change a GPU's float rounding at most).
RESUMABLE_CHANGES = ("out_dir", "run_id", "evolve.generations", "evolve.dispatch", "evolve.mode", "resources.",
                     "train.bf16", "train.channels_last", "train.data_on_gpu", "train.cudnn_benchmark", "train.compile",
                     "quality.batch_size", "tracking.")


def experiment_differences(saved: RunConfig, requested: RunConfig) -> list[str]:
    """'key (saved -> requested)' for each key that would change the experiment if a run were resumed with it."""
    a, b = flat(saved), flat(requested)
    return [f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not k.startswith(RESUMABLE_CHANGES)]


def requested_config(run_dir: Path, source: str | None, overrides: tuple[str, ...]) -> RunConfig:
    """The config a resumed run goes on with: its saved one (restored from its logs' copy where damaged) with the
    overrides, or `source` with them; InputError if that would change the experiment (RESUMABLE_CHANGES)."""
    saved = saved_config(run_dir, restore=True)
    # the run's own config, not its file through load's defaults: a key added since keeps the value the run had
    requested = config.load(source, overrides) if source else config.override(saved, overrides)
    diffs = experiment_differences(saved, requested)
    if diffs:
        raise InputError(f"--resume: the config would change the experiment: {'; '.join(diffs)}")
    return requested


def saved_config(run_dir: Path, restore: bool) -> config.RunConfig:
    """A run's config.yaml, read strictly and checked against the copy in its newest generation file.

    A damaged config.yaml (missing, cut, empty, a key missing or unknown) is never completed from defaults: it is
    replaced by the copy (restore: rewritten from it; else only used), or refused where the logs keep none. An
    intact one that differs from the copy in a key that changes the experiment was edited by hand: refused.
    """

    path, who = rundir.config_file(run_dir), "--resume: " if restore else ""
    copy = logs.saved_config(run_dir)
    if not path.exists() and copy is None:
        raise InputError(f"{who}{path} not found; is {run_dir} a neuroevo run directory?")
    try:
        saved = config.load_saved(path)
    except ConfigError as e:
        damage = e
    else:
        if copy is not None:
            diffs = experiment_differences(_copy_config(copy, who), saved)
            if diffs:
                raise InputError(f"{who}{path} differs from the run's own copy in {copy[0]}: {'; '.join(diffs)}; "
                                 f"undo the edit, or delete {path.name} to restore it from the copy")
        return saved
    if copy is None:
        if not rundir.state_file(run_dir).exists() and not any(rundir.generations_dir(run_dir).glob("*/*.parquet")):
            raise InputError(f"{who}{damage}; no generation is logged yet, so nothing was trained: start a new run "
                             f"(delete {run_dir} to use its run_id again)")
        raise InputError(f"{who}{damage}; the run's logs keep no copy of its config (written by an older "
                         f"neuroevo): repair {path.name} by hand with the values the run used")
    cfg = _copy_config(copy, who)
    if restore:
        try:
            rundir.write(path, copy[1])
        except OSError as e:
            raise InputError(f"{who}{path}: cannot be restored ({e.strerror or type(e).__name__})") from None
    print(f"{'resume' if restore else 'score'}: {damage}; {'restored it from' if restore else 'using'} the copy kept in "
          f"{copy[0]}", file=sys.stderr)
    return cfg


def _copy_config(copy: tuple[Path, str], who: str) -> config.RunConfig:
    try:
        return config.loads_saved(copy[1], f"the config copy in {copy[0]}")
    except ConfigError as e:
        raise InputError(f"{who}{e}") from None


def plan(run_dir: Path, cfg: config.RunConfig) -> tuple[state.RunState | None, tuple[int, ...]]:
    """The saved state, checked against the config and the logs, and the logged generations to train again: those
    whose data file is damaged, has changed since it was logged (fingerprints.py) or does not hold a whole
    population, or whose best's files or the weights the next generation starts from are missing (training is
    deterministic, so the same rows and files come out again).

    A run stopped before its first state was saved has trained nothing: it starts again from generation 0. A state
    that the logs repair (load_checked) replaces state.json at once, the old one kept in discarded/.
    """
    if not rundir.state_file(run_dir).exists() and not rundir.generations_dir(run_dir).exists():
        return None, ()
    try:
        saved, repairs = load_checked(run_dir, cfg)
    except state.StateError as e:
        raise InputError(str(e)) from None
    for repair in repairs:
        print(f"resume: {repair}", file=sys.stderr)
    if repairs:
        path = rundir.state_file(run_dir)
        rundir.write(rundir.discarded_dir(run_dir) / f"{path.name}-{datetime.now():%Y%m%d-%H%M%S}", path.read_bytes())
        state.save(run_dir, saved, cfg.seed)
    redo = []
    for g in range(saved.completed):
        evaluated, problem = logged(cfg, run_dir, g)
        problem = problem or fingerprints.changed(run_dir, g, saved.sha256)
        if not problem:  # the members whose weights the next generation starts from
            kept = [m.chromosome.id for m in population.weights_kept(cfg, g, evaluated)]
            problem = logs.check_saved(run_dir, g, kept)
        if problem:
            print(f"resume: {problem}; generation {g} will be trained again", file=sys.stderr)
            redo.append(g)
    unverified = fingerprints.unverified(saved.sha256, saved.completed, redo)
    if unverified:
        print(f"resume: {unverified}", file=sys.stderr)
    return saved, tuple(redo)


def set_aside(run_dir: Path, cfg: config.RunConfig, generations: tuple[int, ...]) -> None:
    """Move what is damaged out of the dataset, into run_dir/discarded/, for inspection: the folder of each logged
    generation to train again whose data is damaged or changed (else its best's folder, when wrong), and the folder
    of a generation still to train that holds more than its data file."""
    done = state.completed(run_dir)
    if done is None:
        return
    recorded = state.fingerprints(run_dir)[1]
    damaged = []
    for g in generations:
        folder = rundir.generation_dir(run_dir, g)
        if logged(cfg, run_dir, g)[1] or fingerprints.changed(run_dir, g, recorded):
            if folder.exists():  # a folder deleted whole leaves nothing to set aside
                damaged.append((folder, folder.name))
        elif rundir.best_dir(run_dir, g).exists() and logs.check_saved(run_dir, g):
            damaged.append((rundir.best_dir(run_dir, g), f"best-{rundir.best_dir(run_dir, g).name}"))
    later = range(done, max([done, *rundir.logged_generations(run_dir)]) + 1)
    damaged += [(rundir.generation_dir(run_dir, g), rundir.generation_dir(run_dir, g).name) for g in later
                if logs.extra_files(run_dir, g)]
    for folder, name in damaged:
        aside = rundir.discarded_dir(run_dir) / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
        aside.parent.mkdir(exist_ok=True)
        folder.rename(aside)


def load_checked(run_dir: Path, cfg: RunConfig) -> tuple[state.RunState, list[str]]:
    """The saved state checked against the config's population size and the logs, for --resume.

    What the Parquet logs tell is repaired, and each repair said in one line of the list: a `completed` that is not
    a whole number, is negative or runs past the logged generations is counted again, as the generations logged
    whole from 0 on; a population that does not load or has other than evolve.population members is drawn again
    from the generation before's rows (`drawn`). Anything else raises StateError naming the file and what differs.
    """
    path = rundir.state_file(run_dir)
    done, entries, recorded = state.read(run_dir)
    notes = []
    folders = rundir.logged_generations(run_dir)
    last = folders[-1] + 1 if folders else 0
    if not state.is_count(done) or done > last:
        counted = next((g for g in range(last) if logged(cfg, run_dir, g)[1]), last)
        notes.append(f"{path}: completed is {done!r}, but its populations allow 0-{last}; counted again from the "
                     f"logged generations: {counted}")
        kept = {g: h for g, h in recorded.items() if g < counted}
        return state.RunState(drawn(cfg, run_dir, counted), counted, kept), notes
    problem = _population_problem(entries, done, cfg.evolve.population)
    if problem is None:
        return state.RunState(tuple(state.member(m, done) for m in entries), done, recorded), notes
    population = drawn(cfg, run_dir, done)
    source = rundir.generation_file(run_dir, done - 1) if done else "the run seed"
    if population is None:
        raise state.StateError(f"{path}: generation {done}'s population {problem}, and {source} cannot rebuild it")
    notes.append(f"{path}: generation {done}'s population {problem}; rebuilt from {source}")
    return state.RunState(population, done, recorded), notes


def _population_problem(entries: object, generation: int, size: int) -> str | None:
    """What is wrong with a saved population (None: nothing)."""
    try:
        population = tuple(state.member(m, generation) for m in entries)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return f"does not load ({type(e).__name__}: {e})"
    if len(population) != size:
        return f"has {len(population)} members, expected {size}"
    return None


_SCORES = ("status", "error", "fitness", "params_g", "params_d", "fid", "kid", "kid_std", "quality_samples",
           "quality_seconds")


def logged(cfg: RunConfig, run_dir: Path, generation: int) -> tuple[list[Evaluated] | None, str | None]:
    """A logged generation's members in row order (the population's), scored as selection read them, or None and
    what is wrong with its folder: anything logs.check_generation finds, a row that does not load, other than
    evolve.population rows, a chromosome born after the generation."""

    problem = logs.check_generation(run_dir, generation)
    if problem:
        return None, problem
    path = rundir.generation_file(run_dir, generation)
    rows = logs.logged_members(run_dir, generation, _SCORES)
    try:
        members = [state.member({k: v for k, v in r.items() if v is not None}, generation) for r in rows]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return None, f"{path}: a row's member does not load ({type(e).__name__}: {e})"
    if len(members) != cfg.evolve.population:
        return None, f"{path} has {len(members)} rows, expected {cfg.evolve.population}"
    if any(m.born_generation > generation for m in members):
        return None, f"{path}: its chromosomes are not generation {generation}'s population (one is born later)"
    return _evaluated(cfg, members, rows), None


def _evaluated(cfg: RunConfig, members: list[Member], rows: list[dict]) -> list[Evaluated]:
    """The members as dispatch evaluated them: the logged fitness, and fitness.kind pareto's front and crowding
    ranked again from the logged sample quality and sizes (the log keeps the front, not the crowding)."""
    evaluations = [fitness.Evaluation(r["status"], r["error"] or "", r["fitness"]) for r in rows]
    qualities = [None if r.get("quality_samples") is None else
                 Quality(r["fid"], r["kid"], r["kid_std"], r["quality_samples"], r["quality_seconds"]) for r in rows]
    ranked = fitness.rank_generation(evaluations, qualities, [r["params_g"] + r["params_d"] for r in rows],
                                     cfg.fitness)
    return [Evaluated(m, e.fitness, e.front or 0, e.crowding) for m, e in zip(members, ranked)]


def drawn(cfg: RunConfig, run_dir: Path, generation: int) -> tuple[Member, ...] | None:
    """Generation `generation`'s population drawn again as the run drew it: generation 0's from the run seed, a
    later one's by selection from the logged rows of the one before; None where those are damaged."""
    if generation == 0:
        return initial_population(cfg)
    before, _ = logged(cfg, run_dir, generation - 1)
    return None if before is None else next_population(cfg, generation, before)


def logged_population(cfg: RunConfig, run_dir: Path, generation: int) -> tuple[Member, ...]:
    """A logged generation's population, to train again: its rows' where they are whole, else drawn again (its
    generation before must be whole by then: generations are trained again in order)."""
    evaluated, _ = logged(cfg, run_dir, generation)
    members = tuple(e.member for e in evaluated) if evaluated else drawn(cfg, run_dir, generation)
    if members is None:
        raise state.StateError(f"{rundir.generation_file(run_dir, generation - 1)} cannot rebuild generation "
                         f"{generation}'s population")
    return members
