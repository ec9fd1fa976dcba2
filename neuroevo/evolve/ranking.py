"""Which chromosome is fitter: the one ranking rule of selection, the saved best, the reports and the tables.

Fittest first; equal fitness: the earlier generation, then the smaller chromosome id. With fitness.kind pareto,
selection ranks by NSGA-II's front first (the lower, the better), then by crowding distance (the larger, the better;
pareto.py), and only then by fitness. With evolve.rungs, the rung a chromosome reached comes before all of these
(the higher, the better, as in ASHA): one that trained further ranks above one that was stopped earlier, whatever
their fitness, as its fitness measures a longer training. A chromosome whose training failed counts as rung 0 there
(rung_key), among the other failures and the chromosomes stopped first. The order never depends on the order in
which tasks finished, so the same seed ranks the same way in every run.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def order(fitness: Sequence[float], generation: Sequence[int] | None = None,
          chromosome_id: Sequence[str] | None = None, front: Sequence[int] | None = None,
          crowding: Sequence[float] | None = None, rung: Sequence[int] | None = None) -> np.ndarray:
    """The indices of the rows, fittest first. Takes lists or DataFrame columns; a key left out (None) ties, e.g.
    `generation` within one generation, `front` and `crowding` outside pareto selection, or `rung` without
    rungs (a missing rung, in logs older than the column, is rung 0). Rows equal on every key keep their order."""
    keys = [np.asarray(k) for k in (chromosome_id, generation) if k is not None]
    keys.append(-np.asarray(fitness, dtype=float))
    keys += [-np.asarray(crowding, dtype=float)] if crowding is not None else []
    keys += [np.asarray(front)] if front is not None else []
    keys += [-np.nan_to_num(np.asarray(rung, dtype=float))] if rung is not None else []
    return np.lexsort(keys)  # lexsort: the last key is the primary one


def rung_key(rung: Sequence[int] | None, status: Sequence[str]) -> list[int] | None:
    """The `rung` of order() for rows with these rungs and statuses: a failed training's rung counts as 0. None
    (logs older than the column) stays None."""
    if rung is None:
        return None
    return [int(r) if s == "ok" and r is not None and not math.isnan(r) else 0 for r, s in zip(rung, status)]
