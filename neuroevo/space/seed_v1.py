"""The search space `seed-v1`: the reference experiment's chromosomes.

G: ConvTranspose-BatchNorm-PReLU blocks, then a ConvTranspose to the image channels and tanh. D: Conv-BatchNorm-PReLU
blocks, flatten, an FC hidden layer with PReLU, an FC to 1 and a sigmoid. Every layer has stride 1 and padding 0, so
a kernel k moves the side by k - 1: G's kernels are drawn so that they grow the noise side exactly to the image side.
SGD for G and for D, BCE on D's probabilities.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import Field
from pydantic.dataclasses import dataclass as config_section

from neuroevo.errors import ConfigError
from neuroevo.fields import (
    STRICT,
    IntRange,
    LrRange,
    MomentumRange,
    PositiveInt,
    UnitRange,
    check_ranges,
)
from neuroevo.space.genes import Genes, Optimiser, int_in, log_uniform
from neuroevo.space.layer_plan import Layer, LayerPlan
from neuroevo.space.variation import (
    Move,
    insert_at,
    other,
    perturb,
    remove_at,
    replace_at,
)

NAME = "seed-v1"
SIZE_KEYS = "space.channels / space.d_hidden"  # what to narrow when max_params rejects nearly everything


def losses(space: SeedV1Space) -> tuple[str, ...]:
    """The losses its chromosomes train with: the reference's BCE only."""
    return ("bce",)


@config_section(frozen=True, config=STRICT)
class SeedV1Space:
    """The search space `seed-v1`: the reference experiment's chromosomes.

    Every range is inclusive, [min, max]. G: ConvTranspose-BatchNorm-PReLU blocks, then a ConvTranspose to the image
    channels and tanh. D: Conv-BatchNorm-PReLU blocks, flatten, an FC hidden layer with a PReLU, an FC to 1 and a
    sigmoid. Every layer has stride 1 and padding 0, so a kernel k grows (G) or shrinks (D) the side by k - 1.
    BatchNorm has learnable affine parameters, PReLU one slope per channel. SGD for G and for D, BCE loss.
    """

    name: Literal["seed-v1"] = "seed-v1"
    """The search space: `seed-v1` (the default) or `v2`."""
    noise_channels: IntRange = (2, 5)
    """Channels of G's noise tensor, drawn from N(0, 1)."""
    noise_side: UnitRange = (0.25, 0.75)
    """Side of G's square noise tensor, as fractions of the image side.

    Drawn as a whole number of pixels in that range: 16-48 px for 64 px images, 50-150 for 200 px.
    """
    g_blocks: tuple[Annotated[int, Field(ge=0)], PositiveInt] = (3, 23)
    """G's ConvTranspose-BatchNorm-PReLU blocks before its output layer.

    The sampler draws the block count and every kernel so that G's layers grow the noise side exactly to the image
    side (the sum of kernel - 1 over the blocks and the output layer). The range must allow that for every noise
    side, which is checked at start.
    """
    d_blocks: IntRange = (1, 6)
    """D's Conv-BatchNorm-PReLU blocks before its FC layers.

    Together they must not shrink the image to nothing (checked at start).
    """
    channels: IntRange = (5, 300)
    """Output channels of each block of G and of D."""
    kernel: IntRange = (3, 5)
    """Kernel size of every convolution (G's output layer too); at least 2."""
    bn_momentum: UnitRange = (0.1, 0.9)
    """BatchNorm momentum of each block."""
    d_hidden: IntRange = (30, 1200)
    """Units of D's FC hidden layer."""
    lr: LrRange = (1e-5, 1e-4)
    """SGD learning rate of G and of D, each drawn on its own, log-uniform."""
    momentum: MomentumRange = (0.05, 0.9)
    """SGD momentum of G and of D, each drawn on its own."""
    batch_size: PositiveInt = 64
    """Images per training batch, for every chromosome.

    D trains on a real and a fake batch of this size.
    """
    max_params: PositiveInt | None = 50_000_000
    """Most parameters a chromosome may have (G's + D's); null: no bound.

    Larger chromosomes are drawn again, and each row logs how many were (`resampled`). Where 10,000 draws in a row
    are larger, the run stops, naming the keys to narrow.
    """


@dataclass(frozen=True)
class Block:
    """Conv (D) or ConvTranspose (G) with stride 1 and padding 0, then BatchNorm, then per-channel PReLU."""

    channels: int
    kernel: int
    bn_momentum: float


@dataclass(frozen=True)
class SeedV1Chromosome(Genes):
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

    # The genes seed-v1 fixes, as the Chromosome protocol names them (class attributes: the JSON and the id stay genes only).
    space = NAME
    loss = "bce"
    label_smoothing = False
    feature_matching = False
    separate_batches = True
    recipe = None  # none of the modern recipe's practices are genes of seed-v1

    @property
    def d_feature_side(self) -> int:
        """Side of D's last feature map, which is flattened into the FC hidden layer."""
        return self.image_size - sum(b.kernel - 1 for b in self.d_blocks)

    @property
    def noise_shape(self) -> tuple[int, int, int]:
        return self.noise_channels, self.noise_side, self.noise_side

    @property
    def optimisers(self) -> tuple[Optimiser, Optimiser]:
        return Optimiser("sgd", self.g_lr, self.g_momentum), Optimiser("sgd", self.d_lr, self.d_momentum)


def from_json(text: str) -> SeedV1Chromosome:
    d = json.loads(text)
    for key in ("g_blocks", "d_blocks"):
        d[key] = tuple(Block(**b) for b in d[key])
    return SeedV1Chromosome(**d)


def plan(ch: SeedV1Chromosome) -> LayerPlan:
    def blocks(kind: str, c: int, side: int, bs: tuple[Block, ...], grow: int) -> tuple[list[Layer], int, int]:
        layers = []
        for i, b in enumerate(bs, 1):
            out = side + grow * (b.kernel - 1)
            layers.append(Layer(f"block {i}", kind, c, b.channels, side, out, b.kernel, norm="batch",
                                bn_momentum=b.bn_momentum, activation="prelu"))
            c, side = b.channels, out
        return layers, c, side

    g, c, side = blocks("conv_transpose", ch.noise_channels, ch.noise_side, ch.g_blocks, +1)
    g.append(Layer("output", "conv_transpose", c, ch.image_channels, side, ch.image_size, ch.g_out_kernel,
                   activation="tanh"))
    d, c, side = blocks("conv", ch.image_channels, ch.image_size, ch.d_blocks, -1)
    # PReLU on the hidden layer: without it the two FC layers would collapse into one linear map
    d.append(Layer("hidden", "linear", c * side**2, ch.d_hidden, activation="prelu"))
    d.append(Layer("score", "linear", ch.d_hidden, 1, activation="sigmoid"))  # the probability that x is real
    size = ch.image_size
    return LayerPlan(ch.noise_shape, (ch.image_channels, size, size), tuple(g), tuple(d))


# --- validity -------------------------------------------------------------------------------------------------


def noise_sides(space: SeedV1Space, image_size: int) -> tuple[int, int]:
    """Smallest and largest noise side: 16-48 for 64x64 images, 50-150 for 200x200."""
    return math.ceil(space.noise_side[0] * image_size), math.floor(space.noise_side[1] * image_size)


def generator_depths(space: SeedV1Space, grow: int) -> list[int]:
    """Block counts B in space.g_blocks such that B blocks plus the output layer (B + 1 stride-1 layers,
    each adding kernel - 1 pixels) can grow the noise side by exactly `grow` pixels."""
    kmin, kmax = space.kernel
    return [b for b in range(space.g_blocks[0], space.g_blocks[1] + 1)
            if (kmin - 1) * (b + 1) <= grow <= (kmax - 1) * (b + 1)]


def check(s: SeedV1Space, image_size: int, image_channels: int, epochs: int) -> None:
    """Relations between the space's keys and the image size, as one-line ConfigErrors naming the key."""
    check_ranges(s, ("noise_channels", "noise_side", "g_blocks", "d_blocks", "channels", "kernel",
                     "bn_momentum", "d_hidden", "lr", "momentum"))
    if s.kernel[0] < 2:
        raise ConfigError(f"space.kernel: kernels must be at least 2 to grow or shrink the image (got {list(s.kernel)})")
    size = image_size
    problem = _image_misfit(s, size)
    if problem:
        fits = next((bigger for bigger in range(size + 1, 1025) if not _image_misfit(s, bigger)), None)
        hint = f"; data.image_size {size}px is too small for this search space (the smallest that fits is {fits}px)"
        raise ConfigError(problem + (hint if fits else ""))


def _image_misfit(s: SeedV1Space, size: int) -> str:
    """Why the search space cannot make size x size images, or "" when it can."""
    lo, hi = noise_sides(s, size)
    if lo > hi or lo < 1 or hi >= size:
        return f"space.noise_side: {list(s.noise_side)} of a {size}px image leaves no noise side between 1 and {size - 1}"
    for side in range(lo, hi + 1):
        if not generator_depths(s, size - side):
            grow = size - side
            return (f"space.g_blocks: {list(s.g_blocks)} blocks cannot grow a {side}px noise to {size}px with kernels "
                    f"{list(s.kernel)} (needs {math.ceil(grow / (s.kernel[1] - 1)) - 1} to {grow // (s.kernel[0] - 1) - 1} blocks)")
    if s.d_blocks[1] * (s.kernel[1] - 1) >= size:
        return f"space.d_blocks: {s.d_blocks[1]} blocks of kernel {s.kernel[1]} shrink a {size}px image to nothing"
    return ""


# --- sampling -------------------------------------------------------------------------------------------------


def growth_kernels(rng: np.random.Generator, layers: int, grow: int, kmin: int, kmax: int) -> list[int]:
    """`layers` kernels in [kmin, kmax] whose (k - 1) sum to exactly `grow` (caller ensures it is possible)."""
    growth = [kmin - 1] * layers
    spare = grow - sum(growth)
    while spare > 0:
        open_ = [i for i, g in enumerate(growth) if g < kmax - 1]
        i = open_[rng.integers(len(open_))]
        growth[i] += 1
        spare -= 1
    return [g + 1 for g in growth]


def sample_block(rng: np.random.Generator, space: SeedV1Space, kernel: int) -> Block:
    return Block(
        channels=int(rng.integers(space.channels[0], space.channels[1] + 1)),
        kernel=kernel,
        bn_momentum=float(rng.uniform(*space.bn_momentum)),
    )


def sample(space: SeedV1Space, image_size: int, image_channels: int, rng: np.random.Generator) -> SeedV1Chromosome:
    lo, hi = noise_sides(space, image_size)
    noise_side = int(rng.integers(lo, hi + 1))
    grow = image_size - noise_side
    depths = generator_depths(space, grow)  # never empty: check() proved it for every noise side
    n_g = depths[rng.integers(len(depths))]
    g_kernels = growth_kernels(rng, n_g + 1, grow, *space.kernel)
    n_d = int(rng.integers(space.d_blocks[0], space.d_blocks[1] + 1))
    d_kernels = [int(k) for k in rng.integers(space.kernel[0], space.kernel[1] + 1, size=n_d)]
    return SeedV1Chromosome(
        image_size=image_size,
        image_channels=image_channels,
        noise_channels=int(rng.integers(space.noise_channels[0], space.noise_channels[1] + 1)),
        noise_side=noise_side,
        g_blocks=tuple(sample_block(rng, space, k) for k in g_kernels[:-1]),
        g_out_kernel=g_kernels[-1],
        d_blocks=tuple(sample_block(rng, space, k) for k in d_kernels),
        d_hidden=int(rng.integers(space.d_hidden[0], space.d_hidden[1] + 1)),
        g_lr=log_uniform(rng, *space.lr),
        g_momentum=float(rng.uniform(*space.momentum)),
        d_lr=log_uniform(rng, *space.lr),
        d_momentum=float(rng.uniform(*space.momentum)),
        batch_size=space.batch_size,
    )


# --- variation ------------------------------------------------------------------------------------------------

# Crossover's gene groups: each is valid with any other group. G's layers and the noise side that they grow stay
# together, so that G still reaches the image side.
GROUPS = {
    "g": (("noise_side", "g_blocks", "g_out_kernel"), ("noise_channels",), ("g_lr",), ("g_momentum",)),
    "d": (("d_blocks",), ("d_hidden",), ("d_lr",), ("d_momentum",)),
    "training": (),
}


def moves(ch: SeedV1Chromosome, s: SeedV1Space, rng: np.random.Generator) -> dict[str, list[Move]]:
    """Every single change mutation may make, by kind (variation.mutate draws one)."""
    rep = dataclasses.replace
    kmin, kmax = s.kernel
    grow = ch.image_size - ch.noise_side
    found: dict[str, list[Move]] = {"gene": [], "add": [], "remove": [], "lr": []}
    gene = found["gene"]
    for v in other(rng, range(s.noise_channels[0], s.noise_channels[1] + 1), ch.noise_channels):
        gene.append(lambda v=v: rep(ch, noise_channels=v))
    for v in other(rng, range(s.d_hidden[0], s.d_hidden[1] + 1), ch.d_hidden):
        gene.append(lambda v=v: rep(ch, d_hidden=v))
    for net in ("g_blocks", "d_blocks"):
        blocks = getattr(ch, net)
        for i, b in enumerate(blocks):
            for v in other(rng, range(s.channels[0], s.channels[1] + 1), b.channels):
                gene.append(lambda net=net, blocks=blocks, i=i, b=b, v=v:
                            rep(ch, **{net: replace_at(blocks, i, rep(b, channels=v))}))
            gene.append(lambda net=net, blocks=blocks, i=i, b=b:
                        rep(ch, **{net: replace_at(blocks, i, rep(b, bn_momentum=float(rng.uniform(*s.bn_momentum))))}))
    for i, b in enumerate(ch.d_blocks):  # D's kernels may grow only while its last feature map keeps a side >= 1
        for v in other(rng, range(kmin, min(kmax, b.kernel + ch.d_feature_side - 1) + 1), b.kernel):
            gene.append(lambda i=i, b=b, v=v: rep(ch, d_blocks=replace_at(ch.d_blocks, i, rep(b, kernel=v))))
    gene.append(lambda: _regrow(ch, ch.g_blocks, s, rng))  # G's kernels, redrawn to the same total growth
    gene.append(lambda: rep(ch, g_momentum=float(rng.uniform(*s.momentum))))
    gene.append(lambda: rep(ch, d_momentum=float(rng.uniform(*s.momentum))))

    n_g, n_d = len(ch.g_blocks), len(ch.d_blocks)
    depths = generator_depths(s, grow)
    if n_g + 1 in depths:
        i = int_in(rng, (0, n_g))
        found["add"].append(lambda i=i: _regrow(ch, insert_at(ch.g_blocks, i, sample_block(rng, s, kmin)), s, rng))
    if n_g - 1 in depths:
        i = int_in(rng, (0, n_g - 1))
        found["remove"].append(lambda i=i: _regrow(ch, remove_at(ch.g_blocks, i), s, rng))
    if n_d < s.d_blocks[1] and ch.d_feature_side >= kmin:
        i, k = int_in(rng, (0, n_d)), int_in(rng, (kmin, min(kmax, ch.d_feature_side)))
        found["add"].append(lambda i=i, k=k: rep(ch, d_blocks=insert_at(ch.d_blocks, i, sample_block(rng, s, k))))
    if n_d > s.d_blocks[0]:
        i = int_in(rng, (0, n_d - 1))
        found["remove"].append(lambda i=i: rep(ch, d_blocks=remove_at(ch.d_blocks, i)))
    found["lr"].append(lambda: rep(ch, g_lr=perturb(rng, ch.g_lr, *s.lr), d_lr=perturb(rng, ch.d_lr, *s.lr)))
    return found


def _regrow(ch: SeedV1Chromosome, blocks: tuple[Block, ...], s: SeedV1Space, rng: np.random.Generator) -> SeedV1Chromosome:
    """G's blocks with kernels redrawn so that they and the output layer grow the noise exactly to the image."""
    kernels = growth_kernels(rng, len(blocks) + 1, ch.image_size - ch.noise_side, *s.kernel)
    return dataclasses.replace(ch, g_blocks=tuple(dataclasses.replace(b, kernel=k) for b, k in zip(blocks, kernels)),
                               g_out_kernel=kernels[-1])
