"""Which chromosome is fitter: the one ranking rule of selection, the saved best, the reports and the tables.

Fittest first; equal fitness: the earlier generation, then the smaller chromosome id. The order never depends
on the order in which tasks finished, so the same seed ranks the same way in every run.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def order(fitness: Sequence[float], generation: Sequence[int] | None = None,
          chromosome_id: Sequence[str] | None = None) -> np.ndarray:
    """The indices of the rows, fittest first. Takes lists or DataFrame columns; a key left out (None) ties, e.g.
    `generation` within one generation. Rows equal on every key keep their order."""
    keys = [np.asarray(k) for k in (chromosome_id, generation) if k is not None]
    return np.lexsort([*keys, -np.asarray(fitness, dtype=float)])  # lexsort: the last key is the primary one
