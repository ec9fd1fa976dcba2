"""A chromosome is a whole GAN: G and D layers, noise shape and optimiser settings. Sampled from a SpaceConfig.

Pure data and pure functions: no torch here, so the driver can sample, hash and size chromosomes cheaply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np

from neuroevo.config import SpaceConfig, generator_depths, noise_sides


@dataclass(frozen=True)
class Block:
    """Conv (D) or ConvTranspose (G) with stride 1 and padding 0, then BatchNorm, then per-channel PReLU."""

    channels: int
    kernel: int
    bn_momentum: float


@dataclass(frozen=True)
class Chromosome:
    image_size: int
    image_channels: int
    noise_channels: int
    noise_side: int  # the noise is noise_channels x noise_side x noise_side
    g_blocks: tuple[Block, ...]
    g_out_kernel: int  # G's last ConvTranspose, to image_channels, then tanh
    d_blocks: tuple[Block, ...]
    d_hidden: int  # D's FC hidden units, before the FC to 1 and the sigmoid
    g_lr: float
    g_momentum: float
    d_lr: float
    d_momentum: float
    batch_size: int

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Chromosome:
        d = json.loads(text)
        for key in ("g_blocks", "d_blocks"):
            d[key] = tuple(Block(**b) for b in d[key])
        return cls(**d)

    @property
    def id(self) -> str:
        """Content hash: the same genes always give the same id, across runs and machines."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]

    @property
    def d_feature_side(self) -> int:
        """Side of D's last feature map, which is flattened into the FC hidden layer."""
        return self.image_size - sum(b.kernel - 1 for b in self.d_blocks)


def param_counts(ch: Chromosome) -> tuple[int, int]:
    """Trainable parameters of (G, D), computed from the genes; model.py builds exactly these."""

    def blocks(c_in: int, bs: tuple[Block, ...]) -> tuple[int, int]:
        n = 0
        for b in bs:
            n += c_in * b.channels * b.kernel**2  # conv weight, no bias: BatchNorm follows
            n += 2 * b.channels + b.channels  # BatchNorm affine + PReLU slopes
            c_in = b.channels
        return n, c_in

    g, c = blocks(ch.noise_channels, ch.g_blocks)
    g += c * ch.image_channels * ch.g_out_kernel**2 + ch.image_channels
    d, c = blocks(ch.image_channels, ch.d_blocks)
    features = c * ch.d_feature_side**2
    d += features * ch.d_hidden + ch.d_hidden + ch.d_hidden  # FC hidden + its PReLU
    d += ch.d_hidden + 1
    return g, d


def _kernels(rng: np.random.Generator, layers: int, grow: int, kmin: int, kmax: int) -> list[int]:
    """`layers` kernels in [kmin, kmax] whose (k - 1) sum to exactly `grow` (caller ensures it is possible)."""
    growth = [kmin - 1] * layers
    spare = grow - sum(growth)
    while spare > 0:
        open_ = [i for i, g in enumerate(growth) if g < kmax - 1]
        i = open_[rng.integers(len(open_))]
        growth[i] += 1
        spare -= 1
    return [g + 1 for g in growth]


def _block(rng: np.random.Generator, space: SpaceConfig, kernel: int) -> Block:
    return Block(
        channels=int(rng.integers(space.channels[0], space.channels[1] + 1)),
        kernel=kernel,
        bn_momentum=float(rng.uniform(*space.bn_momentum)),
    )


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def sample_one(space: SpaceConfig, image_size: int, image_channels: int, rng: np.random.Generator) -> Chromosome:
    """One chromosome uniformly from the space (learning rates log-uniform), ignoring max_params."""
    lo, hi = noise_sides(space, image_size)
    noise_side = int(rng.integers(lo, hi + 1))
    grow = image_size - noise_side
    depths = generator_depths(space, grow)  # never empty: config.check proved it for every noise side
    n_g = depths[rng.integers(len(depths))]
    g_kernels = _kernels(rng, n_g + 1, grow, *space.kernel)
    n_d = int(rng.integers(space.d_blocks[0], space.d_blocks[1] + 1))
    d_kernels = [int(k) for k in rng.integers(space.kernel[0], space.kernel[1] + 1, size=n_d)]
    return Chromosome(
        image_size=image_size,
        image_channels=image_channels,
        noise_channels=int(rng.integers(space.noise_channels[0], space.noise_channels[1] + 1)),
        noise_side=noise_side,
        g_blocks=tuple(_block(rng, space, k) for k in g_kernels[:-1]),
        g_out_kernel=g_kernels[-1],
        d_blocks=tuple(_block(rng, space, k) for k in d_kernels),
        d_hidden=int(rng.integers(space.d_hidden[0], space.d_hidden[1] + 1)),
        g_lr=_log_uniform(rng, *space.lr),
        g_momentum=float(rng.uniform(*space.momentum)),
        d_lr=_log_uniform(rng, *space.lr),
        d_momentum=float(rng.uniform(*space.momentum)),
        batch_size=space.batch_size,
    )


class SpaceTooTight(RuntimeError):
    """max_params rejects nearly every chromosome of the space."""


def sample(space: SpaceConfig, image_size: int, image_channels: int, rng: np.random.Generator,
           max_tries: int = 10_000) -> tuple[Chromosome, int]:
    """A chromosome within max_params, and how many larger ones were drawn and rejected first."""
    for rejected in range(max_tries):
        ch = sample_one(space, image_size, image_channels, rng)
        if space.max_params is None or sum(param_counts(ch)) <= space.max_params:
            return ch, rejected
    raise SpaceTooTight(
        f"space.max_params: {max_tries} samples in a row had more than {space.max_params} parameters; "
        "raise it or narrow space.channels / space.d_hidden")
