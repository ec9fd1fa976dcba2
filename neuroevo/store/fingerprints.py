"""Every logged generation's fingerprint: the sha256 of its Parquet file as logged, kept in state.json (state.py).

A file changed since it was logged (edited and rewritten, or damaged on disk) no longer matches it, however whole
and readable it still is: `neuroevo check` names it, and --resume sets its generation aside and trains it again.
The cost is flat per generation: the file is hashed once when it is logged, and read once per check or resume.
Generations logged before fingerprints were kept have none, and cannot be verified.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from pathlib import Path

from neuroevo.store import rundir

_CHUNK = 1 << 20


def of(path: Path) -> str:
    """The sha256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def changed(run_dir: Path, generation: int, recorded: Mapping[int, str]) -> str | None:
    """'PATH has changed since it was logged (...)' where the generation's file differs from its fingerprint (or
    cannot be read); None where it matches or has no fingerprint."""
    if generation not in recorded:
        return None
    path = rundir.generation_file(run_dir, generation)
    try:
        digest = of(path)
    except OSError as e:
        return f"{path} cannot be read ({e.strerror or type(e).__name__})"
    if digest == recorded[generation]:
        return None
    return (f"{path} has changed since it was logged (sha256 {digest[:12]}..., state.json recorded "
            f"{recorded[generation][:12]}...)")


def unverified(recorded: Mapping[int, str], completed: int, redo: Collection[int] = ()) -> str | None:
    """The one line that says which logged generations have no fingerprint, but those to train again (`redo`);
    None where all have one."""
    missing = [g for g in range(completed) if g not in recorded and g not in redo]
    if not missing:
        return None
    one = len(missing) == 1
    return (f"{generations_text(missing)} of {completed} logged {'has' if one else 'have'} no fingerprint in "
            f"state.json (logged by a neuroevo that kept none), so {'it' if one else 'they'} cannot be verified")


def generations_text(generations: list[int]) -> str:
    """'generation 3', 'generations 0-4' or 'generations 1, 4, 7'."""
    if len(generations) == 1:
        return f"generation {generations[0]}"
    if generations == list(range(generations[0], generations[-1] + 1)):
        return f"generations {generations[0]}-{generations[-1]}"
    more = ", ..." if len(generations) > 5 else ""
    return f"generations {', '.join(map(str, generations[:5]))}{more}"
