"""The driver's resumable state: every generation's population and how many generations are logged.

Written atomically to <run_dir>/state.json after each generation. There is no random-number-generator state
to save: each generation's sampler is derived from (run seed, generation), so a resumed run draws exactly the
chromosomes an uninterrupted one would.
"""

from __future__ import annotations

import json
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
    return Member(ch, doc["born_generation"], doc["resampled"],
                  tuple(doc.get("parents", [ch.id] if elite else [])), doc.get("operator", "elite" if elite else "random"))


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
