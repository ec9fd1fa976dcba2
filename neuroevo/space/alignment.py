"""Which layers of a child's network continue which layers of its parent's: the two layer sequences aligned, so
that a child can start from its parent's trained weights (train/inherit.py, evolve.inherit).

Aligned as sequences (difflib.SequenceMatcher), not by position: a block inserted or removed shifts no later match.
Pure data, no torch: the task that builds a child's weights asks it, and so could the driver.
"""

from __future__ import annotations

import dataclasses
from difflib import SequenceMatcher
from typing import Mapping, Sequence

from neuroevo.space.layer_plan import Layer


def signature(layer: Layer) -> tuple:
    """What a layer is, short of its input channels (which follow the layer before it) and its name (a number that
    shifts when a block is inserted)."""
    return (layer.kind, layer.c_out, layer.kernel, layer.stride, layer.norm, layer.activation, layer.skip, layer.pool)


def align(parent: Sequence[Layer], child: Sequence[Layer]) -> tuple[int | None, ...]:
    """For each child layer, the index of the parent layer it continues, or None for a new one.

    Layers of equal signatures match first, in order; between two such runs, the parent's and the child's changed
    layers of one kind pair up in order (a layer widened, or given another activation, continues its old self)."""
    matched: list[int | None] = [None] * len(child)
    runs = SequenceMatcher(None, [signature(p) for p in parent], [signature(c) for c in child], autojunk=False)
    for tag, i0, i1, j0, j1 in runs.get_opcodes():
        if tag == "equal":
            matched[j0:j1] = range(i0, i1)
        elif tag == "replace":
            kinds = SequenceMatcher(None, [p.kind for p in parent[i0:i1]], [c.kind for c in child[j0:j1]],
                                    autojunk=False)
            for a, b, n in kinds.get_matching_blocks():
                matched[j0 + b:j0 + b + n] = range(i0 + a, i0 + a + n)
    return tuple(matched)


def shared_params(parent: Sequence[Layer], child: Sequence[Layer]) -> int:
    """The parameters of the child's layers that are some parent layer unchanged."""
    return sum(c.params for c, i in zip(child, align(parent, child))
               if i is not None and _unnamed(parent[i]) == _unnamed(c))


def closest(child: Sequence[Layer], parents: Mapping[str, Sequence[Layer]]) -> str:
    """Of the parents (by id, each one's layers of the same network), the one the child shares most parameters
    with; the first of equals. A crossover child's G came from one parent, or mostly so; its D likewise."""
    ids = list(parents)
    return max(ids, key=lambda i: (shared_params(parents[i], child), -ids.index(i)))


def _unnamed(layer: Layer) -> Layer:
    return dataclasses.replace(layer, name="")
