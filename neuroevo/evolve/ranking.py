"""Which chromosome is fitter: the one ranking rule of selection, the saved best, the reports and the tables.

Fittest first; equal fitness: the earlier generation, then the smaller chromosome id. With fitness.kind pareto,
selection ranks by NSGA-II's front first (the lower, the better), then by crowding distance (the larger, the
better; pareto.py), and only then by fitness. The order never depends on the order in which tasks finished, so the
same seed ranks the same way in every run.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def order(fitness: Sequence[float], generation: Sequence[int] | None = None,
          chromosome_id: Sequence[str] | None = None, front: Sequence[int] | None = None,
          crowding: Sequence[float] | None = None) -> np.ndarray:
    """The indices of the rows, fittest first. Takes lists or DataFrame columns; a key left out (None) ties, e.g.
    `generation` within one generation, or `front` and `crowding` outside pareto selection. Rows equal on every
    key keep their order."""
    keys = [np.asarray(k) for k in (chromosome_id, generation) if k is not None]
    keys.append(-np.asarray(fitness, dtype=float))
    keys += [-np.asarray(crowding, dtype=float)] if crowding is not None else []
    keys += [np.asarray(front)] if front is not None else []
    return np.lexsort(keys)  # lexsort: the last key is the primary one
