"""The driver's resumable state: the population of the next generation to train, and how many are logged.

Written atomically to <run_dir>/state.json after each generation. Of the logged generations it keeps only each file's
fingerprint (fingerprints.py, 64 hex digits a generation), not their populations: those are their Parquet rows
(resume.logged); --resume reads them there, and draws a damaged generation's population again as the run drew it
(resume.drawn). There is no random-number-generator state to save: each generation's sampler is derived from (run
seed, generation), so a resumed run draws exactly the chromosomes an uninterrupted one would.

State files written before format 2 hold every generation's population under "generations": they load (only the
population of generation `completed` is read), and the next save writes format 2. State files written before
fingerprints were kept have no "sha256": they load, and their generations cannot be verified.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
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
                       "population": [_member_json(m) for m in state.population],
                       "sha256": {str(g): h for g, h in sorted(state.sha256.items()) if g < state.completed}})


def save(run_dir: Path, state: RunState, seed: int) -> None:
    rundir.write(rundir.state_file(run_dir), dumps(state, seed))  # a reader sees the old state or the new one


def read(run_dir: Path) -> tuple[object, object, dict[int, str]]:
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
        if not is_count(completed) or completed >= len(entries):
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
    completed, _, recorded = read(run_dir)
    if not is_count(completed):
        raise StateError(f"{rundir.state_file(run_dir)}: unreadable (completed is {completed!r})")
    return completed, recorded


def is_count(n: object) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0


def load(run_dir: Path) -> RunState:
    completed, entries, recorded = read(run_dir)
    try:
        return RunState(tuple(member(m, completed) for m in entries), int(completed), recorded)
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
