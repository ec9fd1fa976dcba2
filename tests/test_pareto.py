"""NSGA-II's fronts and crowding distance, checked against brute force."""

import numpy as np
import pytest

from neuroevo.evolve import pareto


def brute_force_fronts(f: np.ndarray) -> np.ndarray:
    """Peel off the non-dominated points again and again, checking every pair."""
    rank, left, k = np.full(len(f), -1), set(range(len(f))), 0
    while left:
        front = {i for i in left if not any((f[j] <= f[i]).all() and (f[j] < f[i]).any() for j in left if j != i)}
        for i in front:
            rank[i] = k
        left -= front
        k += 1
    return rank


@pytest.mark.parametrize("seed", range(20))
def test_fronts_equal_a_brute_force_dominance_count(seed):
    rng = np.random.default_rng(seed)
    n, m = rng.integers(1, 40), rng.integers(1, 4)
    f = rng.integers(0, 6, size=(n, m)).astype(float)  # small integers: many ties and duplicates
    assert (pareto.fronts(f) == brute_force_fronts(f)).all()


def test_front_zero_is_what_no_point_dominates():
    f = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [6, 6], [2, 2]])
    assert pareto.fronts(f).tolist() == [0, 0, 0, 1, 2, 0]  # equal points do not dominate each other


def test_crowding_is_infinite_at_the_ends_and_larger_where_sparse():
    f = np.array([[0.0, 10.0], [1.0, 9.0], [2.0, 8.0], [9.0, 1.0], [10.0, 0.0]])
    rank = pareto.fronts(f)
    assert (rank == 0).all()
    d = pareto.crowding(f, rank)
    assert np.isinf(d[0]) and np.isinf(d[4])
    assert d[3] > d[1]  # [9, 1] has a wide gap to its left neighbour; [1, 9] sits between close ones
    assert d[1] == pytest.approx((2 - 0) / 10 + (10 - 8) / 10)
