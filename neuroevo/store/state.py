"""The driver's resumable state: the population of the next generation to train, and how many are logged.

Written atomically to <run_dir>/state.json after each generation. Of the logged generations it keeps only each file's
fingerprint (fingerprints.py, 64 hex digits a generation), not their populations: those are their Parquet rows
(`logged`); --resume reads them there, and draws a damaged generation's population again as the run drew it
(`drawn`). There is no random-number-generator state to save: each generation's sampler is derived from (run seed,
generation), so a resumed run draws exactly the chromosomes an uninterrupted one would.

State files written before format 2 hold every generation's population under "generations": they load (only the
population of generation `completed` is read), and the next save writes format 2. State files written before
fingerprints were kept have no "sha256": they load, and their generations cannot be verified.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from neuroevo.config import RunConfig
from neuroevo.evolve import fitness
from neuroevo.evolve.population import (
    Evaluated,
    Member,
    initial_population,
    next_population,
)
from neuroevo.space.registry import from_json
from neuroevo.store import rundir
from neuroevo.train.results import Quality

FORMAT = 2


class StateError(ValueError):
    """A run directory that cannot be resumed; one line naming the file."""


@dataclass(frozen=True)
class RunState:
    population: tuple[Member, ...]  # generation `completed`'s: drawn, not trained yet
    completed: int  # generations 0 .. completed-1 are logged
    sha256: dict[int, str] = field(default_factory=dict)  # each logged generation's file's, where recorded

    def advance(self, next_population: tuple[Member, ...], sha256: str | None = None) -> RunState:
        """Generation `completed` is logged (its file's fingerprint `sha256`) and `next_population` is the one
        after it."""
        return RunState(next_population, self.completed + 1, self.fingerprinted(self.completed, sha256).sha256)

    def fingerprinted(self, generation: int, sha256: str | None) -> RunState:
        """With generation `generation`'s file fingerprinted anew (None: not at all), e.g. once it is trained again."""
        recorded = {g: h for g, h in self.sha256.items() if g != generation}
        return replace(self, sha256=recorded if sha256 is None else {**recorded, generation: sha256})


def _member_json(m: Member) -> dict:
    return {"chromosome": m.chromosome.to_json(), "born_generation": m.born_generation, "resampled": m.resampled,
            "parents": list(m.parents), "operator": m.operator}


def _member(doc: dict, generation: int) -> Member:
    """State files and log rows written before parents and operators were recorded hold only the reference's two
    operators."""
    ch = from_json(doc["chromosome"])
    elite = doc["born_generation"] < generation
    m = Member(ch, doc["born_generation"], doc["resampled"],
               tuple(doc.get("parents", [ch.id] if elite else [])), doc.get("operator", "elite" if elite else "random"))
    if not (isinstance(m.born_generation, int) and isinstance(m.resampled, int) and isinstance(m.operator, str)
            and all(isinstance(p, str) for p in m.parents)) or isinstance(m.born_generation, bool):
        raise TypeError(f"a member of generation {generation} has a field of the wrong type")
    return m


def save(run_dir: Path, state: RunState, seed: int) -> None:
    doc = {"format": FORMAT, "seed": seed, "completed": state.completed,
           "population": [_member_json(m) for m in state.population],
           "sha256": {str(g): h for g, h in sorted(state.sha256.items()) if g < state.completed}}
    rundir.write(rundir.state_file(run_dir), json.dumps(doc))  # a reader sees the old state or the new one


def _read(run_dir: Path) -> tuple[object, object, dict[int, str]]:
    """state.json's `completed`, the member entries of generation `completed` (None where an older file holds
    no such generation), as saved: unchecked; and the logged generations' fingerprints, checked."""
    path = rundir.state_file(run_dir)
    if not path.is_file():
        raise StateError(f"{path}: not found; is {run_dir} a neuroevo run directory?")
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict):
            raise TypeError("expected a JSON object")
        if "generations" not in doc:
            if doc.get("format") != FORMAT:
                raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT} (written by a newer neuroevo?)")
            return doc.get("completed"), doc["population"], _fingerprints(doc.get("sha256", {}))
        entries, completed = doc["generations"], doc.get("completed")  # before format 2: every generation's
        if not isinstance(entries, list) or not entries:
            raise TypeError("generations is not a list of populations")
        if not _count(completed) or completed >= len(entries):
            return completed, None, {}
        return completed, entries[completed]["population"], {}
    except (ValueError, KeyError, TypeError) as e:
        raise StateError(f"{path}: unreadable ({type(e).__name__}: {e})") from None


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _fingerprints(saved: object) -> dict[int, str]:
    """{generation: sha256} from state.json's {"0": "9f86d0...", ...}."""
    if not isinstance(saved, dict):
        raise TypeError("sha256 is not an object of generations")
    for g, h in saved.items():
        if not (g.isdigit() and g.isascii() and isinstance(h, str) and _SHA256.fullmatch(h)):
            raise ValueError(f"sha256 of generation {g!r} is not a generation's sha256")
    return {int(g): h for g, h in saved.items()}


def fingerprints(run_dir: Path) -> tuple[int, dict[int, str]]:
    """How many generations state.json says are logged, and their recorded fingerprints (fingerprints.py); read
    without building its population. StateError where it does not say."""
    completed, _, recorded = _read(run_dir)
    if not _count(completed):
        raise StateError(f"{rundir.state_file(run_dir)}: unreadable (completed is {completed!r})")
    return completed, recorded


def _count(n: object) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0


def load(run_dir: Path) -> RunState:
    completed, entries, recorded = _read(run_dir)
    try:
        return RunState(tuple(_member(m, completed) for m in entries), int(completed), recorded)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise StateError(f"{rundir.state_file(run_dir)}: unreadable ({type(e).__name__}: {e})") from None


def completed(run_dir: Path) -> int | None:
    """How many generations state.json says are logged, read without building its population; None where there is
    no state.json or it does not say (load_checked tells why, and repairs what the logs allow)."""
    try:
        done = json.loads(rundir.state_file(run_dir).read_text()).get("completed")
    except (OSError, ValueError, AttributeError):
        return None
    return done if _count(done) else None


def load_checked(run_dir: Path, cfg: RunConfig) -> tuple[RunState, list[str]]:
    """The saved state checked against the config's population size and the logs, for --resume.

    What the Parquet logs tell is repaired, and each repair said in one line of the list: a `completed` that is not
    a whole number, is negative or runs past the logged generations is counted again, as the generations logged
    whole from 0 on; a population that does not load or has other than evolve.population members is drawn again
    from the generation before's rows (`drawn`). Anything else raises StateError naming the file and what differs.
    """
    path = rundir.state_file(run_dir)
    done, entries, recorded = _read(run_dir)
    notes = []
    folders = rundir.logged_generations(run_dir)
    last = folders[-1] + 1 if folders else 0
    if not _count(done) or done > last:
        counted = next((g for g in range(last) if logged(cfg, run_dir, g)[1]), last)
        notes.append(f"{path}: completed is {done!r}, but its populations allow 0-{last}; counted again from the "
                     f"logged generations: {counted}")
        kept = {g: h for g, h in recorded.items() if g < counted}
        return RunState(drawn(cfg, run_dir, counted), counted, kept), notes
    problem = _population_problem(entries, done, cfg.evolve.population)
    if problem is None:
        return RunState(tuple(_member(m, done) for m in entries), done, recorded), notes
    population = drawn(cfg, run_dir, done)
    source = rundir.generation_file(run_dir, done - 1) if done else "the run seed"
    if population is None:
        raise StateError(f"{path}: generation {done}'s population {problem}, and {source} cannot rebuild it")
    notes.append(f"{path}: generation {done}'s population {problem}; rebuilt from {source}")
    return RunState(population, done, recorded), notes


def _population_problem(entries: object, generation: int, size: int) -> str | None:
    """What is wrong with a saved population (None: nothing)."""
    try:
        population = tuple(_member(m, generation) for m in entries)
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
    from neuroevo.store import (
        logs,  # pandas and pyarrow, for --resume only: a new run's driver saves state without them
    )

    problem = logs.check_generation(run_dir, generation)
    if problem:
        return None, problem
    path = rundir.generation_file(run_dir, generation)
    rows = logs.logged_members(run_dir, generation, _SCORES)
    try:
        members = [_member({k: v for k, v in r.items() if v is not None}, generation) for r in rows]
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
        raise StateError(f"{rundir.generation_file(run_dir, generation - 1)} cannot rebuild generation "
                         f"{generation}'s population")
    return members
