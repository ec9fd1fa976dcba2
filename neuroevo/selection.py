"""Who survives a generation. Pure functions over (chromosome id, fitness)."""

from __future__ import annotations

from typing import Sequence, TypeVar

T = TypeVar("T")


def rank(members: Sequence[T], fitness: Sequence[float], ids: Sequence[str]) -> list[T]:
    """Best first; ties broken by chromosome id so the order never depends on task finishing order."""
    order = sorted(range(len(members)), key=lambda i: (-fitness[i], ids[i]))
    return [members[i] for i in order]


def elites(members: Sequence[T], fitness: Sequence[float], ids: Sequence[str], n_elite: int) -> list[T]:
    """The reference strategy keeps the n_elite fittest unchanged; the caller refills the rest at random."""
    return rank(members, fitness, ids)[:n_elite]
