"""The driver's resumable state: the population of the next generation to train, and how many are logged.

Written atomically to <run_dir>/state.json after each generation; its size does not grow with the generations. The
populations of the logged generations are their Parquet rows (`logged`): --resume reads them there, and draws a
damaged generation's population again as the run drew it (`drawn`). There is no random-number-generator state to
save: each generation's sampler is derived from (run seed, generation), so a resumed run draws exactly the
chromosomes an uninterrupted one would.

State files written before format 2 hold every generation's population under "generations": they load (only the
population of generation `completed` is read), and the next save writes format 2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from neuroevo.evolve.population import (
    Member,
)
from neuroevo.space.registry import from_json
from neuroevo.store import rundir

FORMAT = 2


class StateError(ValueError):
    """A run directory that cannot be resumed; one line naming the file."""


@dataclass(frozen=True)
class RunState:
    population: tuple[Member, ...]  # generation `completed`'s: drawn, not trained yet
    completed: int  # generations 0 .. completed-1 are logged

    def advance(self, next_population: tuple[Member, ...]) -> RunState:
        """Generation `completed` is logged and `next_population` is the one after it."""
        return RunState(next_population, self.completed + 1)


def _member_json(m: Member) -> dict:
    return {"chromosome": m.chromosome.to_json(), "born_generation": m.born_generation, "resampled": m.resampled,
            "parents": list(m.parents), "operator": m.operator}


def member(doc: dict, generation: int) -> Member:
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


def dumps(state: RunState, seed: int) -> str:
    """state.json's text, in format 2."""
    return json.dumps({"format": FORMAT, "seed": seed, "completed": state.completed,
                       "population": [_member_json(m) for m in state.population]})


def save(run_dir: Path, state: RunState, seed: int) -> None:
    rundir.write(rundir.state_file(run_dir), dumps(state, seed))  # a reader sees the old state or the new one


def read(run_dir: Path) -> tuple[object, object]:
    """state.json's `completed` and the member entries of generation `completed` (None where an older file holds
    no such generation), as saved: unchecked."""
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
            return doc.get("completed"), doc["population"]
        entries, completed = doc["generations"], doc.get("completed")  # before format 2: every generation's
        if not isinstance(entries, list) or not entries:
            raise TypeError("generations is not a list of populations")
        if not is_count(completed) or completed >= len(entries):
            return completed, None
        return completed, entries[completed]["population"]
    except (ValueError, KeyError, TypeError) as e:
        raise StateError(f"{path}: unreadable ({type(e).__name__}: {e})") from None


def is_count(n: object) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0


def load(run_dir: Path) -> RunState:
    completed, entries = read(run_dir)
    try:
        return RunState(tuple(member(m, completed) for m in entries), int(completed))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise StateError(f"{rundir.state_file(run_dir)}: unreadable ({type(e).__name__}: {e})") from None


def completed(run_dir: Path) -> int | None:
    """How many generations state.json says are logged, read without building its population; None where there is
    no state.json or it does not say (load_checked tells why, and repairs what the logs allow)."""
    try:
        done = json.loads(rundir.state_file(run_dir).read_text()).get("completed")
    except (OSError, ValueError, AttributeError):
        return None
    return done if is_count(done) else None
