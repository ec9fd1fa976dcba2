"""Multi-objective ranking as NSGA-II does it (Deb et al. 2002): non-dominated fronts, then crowding distance.

Pure functions of an N x M array of objectives, every one minimised (e.g. FID and parameter count). A point
dominates another if it is no worse in every objective and better in at least one. Front 0 holds the points no
other point dominates; front k those dominated only by points of fronts < k. Within a front, the crowding distance
prefers points in sparse regions, so that selection keeps the front spread out; a front's extreme points have an
infinite distance.
"""

from __future__ import annotations

import numpy as np


def fronts(objectives: np.ndarray) -> np.ndarray:
    """The front of every point (0 = non-dominated), by NSGA-II's fast non-dominated sort: O(M N^2)."""
    f = np.asarray(objectives, dtype=float)
    n = len(f)
    # dominates[i, j]: i is no worse than j everywhere and better somewhere
    no_worse = (f[:, None, :] <= f[None, :, :]).all(axis=2)
    better = (f[:, None, :] < f[None, :, :]).any(axis=2)
    dominates = no_worse & better
    dominated_by = dominates.sum(axis=0)  # how many points dominate each point
    rank = np.full(n, -1)
    current = np.flatnonzero(dominated_by == 0)
    k = 0
    while current.size:
        rank[current] = k
        dominated_by = dominated_by - dominates[current].sum(axis=0)
        current = np.flatnonzero((dominated_by == 0) & (rank == -1))
        k += 1
    return rank


def crowding(objectives: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Each point's crowding distance within its front: the sum over objectives of the gap between its two
    neighbours, relative to the front's range; infinite at a front's ends."""
    f = np.asarray(objectives, dtype=float)
    distance = np.zeros(len(f))
    for k in np.unique(rank):
        members = np.flatnonzero(rank == k)
        for m in range(f.shape[1]):
            order = members[np.argsort(f[members, m], kind="stable")]
            span = f[order[-1], m] - f[order[0], m]
            distance[order[0]] = distance[order[-1]] = np.inf
            if len(order) > 2 and span > 0:
                distance[order[1:-1]] += (f[order[2:], m] - f[order[:-2], m]) / span
    return distance
