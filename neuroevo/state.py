"""The driver's resumable state: every generation's population and how many generations are logged.

Written atomically to <run_dir>/state.json after each generation. There is no random-number-generator state
to save: each generation's sampler is derived from (run seed, generation), so a resumed run draws exactly the
chromosomes an uninterrupted one would.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from neuroevo import rundir
from neuroevo.genome import from_json
from neuroevo.population import Member


class StateError(ValueError):
    """A run directory that cannot be resumed; one line naming the file."""


@dataclass(frozen=True)
class RunState:
    populations: tuple[tuple[Member, ...], ...]  # index = generation; the last one may not be trained yet
    completed: int  # generations 0 .. completed-1 are logged

    def population(self, generation: int) -> tuple[Member, ...]:
        return self.populations[generation]

    def advance(self, next_population: tuple[Member, ...]) -> RunState:
        """Generation `completed` is logged and `next_population` is the one after it."""
        return RunState(self.populations[: self.completed + 1] + (next_population,), self.completed + 1)


def _member_json(m: Member) -> dict:
    return {"chromosome": m.chromosome.to_json(), "born_generation": m.born_generation, "resampled": m.resampled,
            "parents": list(m.parents), "operator": m.operator}


def _member(doc: dict, generation: int) -> Member:
    """State files written before parents and operators were recorded hold only the reference's two operators."""
    ch = from_json(doc["chromosome"])
    elite = doc["born_generation"] < generation
    m = Member(ch, doc["born_generation"], doc["resampled"],
               tuple(doc.get("parents", [ch.id] if elite else [])), doc.get("operator", "elite" if elite else "random"))
    if not (isinstance(m.born_generation, int) and isinstance(m.resampled, int) and isinstance(m.operator, str)
            and all(isinstance(p, str) for p in m.parents)) or isinstance(m.born_generation, bool):
        raise TypeError(f"a member of generation {generation} has a field of the wrong type")
    return m


def save(run_dir: Path, state: RunState, seed: int) -> None:
    doc = {
        "seed": seed,
        "completed": state.completed,
        "generations": [
            {
                "generation": g,
                "elite_ids": [m.chromosome.id for m in pop if m.born_generation < g],
                "population": [_member_json(m) for m in pop],
            }
            for g, pop in enumerate(state.populations)
        ],
    }
    rundir.write(rundir.state_file(run_dir), json.dumps(doc))  # a reader sees the old state or the new one


def load(run_dir: Path) -> RunState:
    path = rundir.state_file(run_dir)
    if not path.is_file():
        raise StateError(f"{path}: not found; is {run_dir} a neuroevo run directory?")
    try:
        doc = json.loads(path.read_text())
        populations = tuple(
            tuple(_member(m, generation) for m in g["population"])
            for generation, g in enumerate(doc["generations"]))
        return RunState(populations, int(doc["completed"]))
    except (ValueError, KeyError, TypeError) as e:
        raise StateError(f"{path}: unreadable ({type(e).__name__}: {e})") from None


def completed(run_dir: Path) -> int | None:
    """How many generations state.json says are logged, read without building its populations; None where there is
    no state.json or it does not say (load_checked tells why, and repairs what the logs allow)."""
    try:
        done = json.loads(rundir.state_file(run_dir).read_text()).get("completed")
    except (OSError, ValueError, AttributeError):
        return None
    return done if isinstance(done, int) and not isinstance(done, bool) and done >= 0 else None


def load_checked(run_dir: Path, population_size: int) -> tuple[RunState, list[str]]:
    """The saved state checked against the config's population size and the logged generations, for --resume.

    What the Parquet logs tell is repaired, and each repair said in one line of the list: a population that does not
    load or has other than `population_size` members is rebuilt from its generation's rows, when its log is whole and
    holds the members it kept; a `completed` that is not a whole number, is negative or runs past the populations is
    counted again, as the generations logged whole from 0 on (at most the last population's). Anything else raises
    StateError naming the file and what differs.
    """
    from neuroevo import logs  # pandas and pyarrow, for --resume only: a new run's driver saves state without them

    path = rundir.state_file(run_dir)
    if not path.is_file():
        raise StateError(f"{path}: not found; is {run_dir} a neuroevo run directory?")
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict):
            raise TypeError("expected a JSON object")
        entries = doc["generations"]
        if not isinstance(entries, list) or not entries:
            raise TypeError("generations is not a list of populations")
    except (ValueError, KeyError, TypeError) as e:
        raise StateError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    notes = []
    populations: list[tuple[Member, ...] | None] = []
    for generation, entry in enumerate(entries):
        population, problem = _population(entry, generation, population_size)
        if problem:
            population = _rebuilt(run_dir, generation, population_size, population)
            if population is None:
                populations.append(None)
                notes.append(f"{path}: generation {generation}'s population {problem}")
                continue
            notes.append(f"{path}: generation {generation}'s population {problem}; rebuilt from "
                         f"{rundir.generation_file(run_dir, generation)}")
        populations.append(population)
    good = next((g for g, pop in enumerate(populations) if pop is None), len(populations))  # 0 .. good-1 load
    completed = doc.get("completed")
    if not isinstance(completed, int) or isinstance(completed, bool) or not 0 <= completed < good:
        if good == 0:
            raise StateError(notes[0] + f", and {rundir.generation_file(run_dir, 0)} cannot rebuild it")
        logged = next((g for g in range(good - 1) if logs.check_generation(run_dir, g, populations[g])), good - 1)
        notes.append(f"{path}: completed is {completed!r}, but its populations allow 0-{good - 1}; counted again "
                     f"from the logged generations: {logged}")
        completed = logged
    return RunState(tuple(populations[: completed + 1]), completed), notes


def _population(entry: object, generation: int, size: int) -> tuple[tuple[Member, ...] | None, str | None]:
    """A state entry's population and what is wrong with it (None: nothing)."""
    try:
        population = tuple(_member(m, generation) for m in entry["population"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return None, f"does not load ({type(e).__name__}: {e})"
    if len(population) != size:
        return population, f"has {len(population)} members, expected {size}"
    return population, None


def _rebuilt(run_dir: Path, generation: int, size: int,
             saved: tuple[Member, ...] | None) -> tuple[Member, ...] | None:
    """A generation's population from its log's rows, when the log is whole and agrees with what the state kept
    (`saved`: the members it still holds, or None)."""
    from neuroevo import logs

    rows = logs.logged_members(run_dir, generation)
    try:
        members = tuple(_member({k: v for k, v in r.items() if v is not None}, generation) for r in rows or ())
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if len(members) != size or logs.check_generation(run_dir, generation, members) or \
            any(m.born_generation > generation for m in members):
        return None
    if saved is not None:  # the state lost members or gained some: the log must hold the rest
        logged, kept = Counter(m.chromosome.id for m in members), Counter(m.chromosome.id for m in saved)
        if kept - logged and logged - kept:
            return None
    return members

