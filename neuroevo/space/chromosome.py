"""The chromosome: a whole GAN as genes, as the rest of neuroevo sees it, whatever its search space.

A chromosome is a frozen dataclass of one search space (seed_v1.SeedV1Chromosome, v2.V2Chromosome). Downstream of the
search spaces, code reads a chromosome only through the `Chromosome` protocol below and through its layer plan
(registry.plan); its `space` names the space that made it, and registry.py asks that space.
"""

from __future__ import annotations

from typing import Protocol

from neuroevo.space.genes import Optimiser, Recipe


class Chromosome(Protocol):
    """What every chromosome offers, whatever its space; its layers are registry.plan(ch)."""

    space: str  # the search space that made it: a key of registry.SPACES
    image_size: int
    image_channels: int
    batch_size: int
    loss: str  # bce | wgan-gp | hinge (losses.py)
    label_smoothing: bool  # bce only: D's target for real images is 0.9
    feature_matching: bool  # G's loss adds the distance between D's mean features on real and fake images
    separate_batches: bool  # D sees a real batch and a fake batch, rather than one mixed batch
    recipe: Recipe | None  # spectral norm, G's EMA, DiffAugment, R1, n_critic; None where the space has no such genes

    @property
    def id(self) -> str: ...

    @property
    def noise_shape(self) -> tuple[int, int, int]: ...

    @property
    def optimisers(self) -> tuple[Optimiser, Optimiser]: ...  # G's, D's

    def to_json(self) -> str: ...
