"""A chromosome is a whole GAN: G and D layers, noise shape and optimiser settings. Sampled from a search space.

Two chromosome types, one per space: `Chromosome` (seed-v1, the reference experiment's) and `ChromosomeV2`
(v2: per-block layer genes, loss, optimisers and training practices). Every chromosome either space can draw
builds: G's output side is the image side and D's flattened features are bounded, by construction.

Pure data and pure functions: no torch here, so the driver can sample, hash and size chromosomes cheaply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np

from neuroevo.config import (SpaceConfig, SpaceV2, generator_depths, halved_side, noise_sides, odd_kernels,
                             v2_discriminator_depths, v2_generator_depths, v2_halvings, v2_upsamplings)


@dataclass(frozen=True)
class Optimiser:
    name: str  # sgd | adam
    lr: float
    momentum: float  # SGD's momentum, or Adam's beta1 (beta2 is 0.999)
    decay_epoch: int = 0  # 0: a constant learning rate; else lr x decay_factor from this epoch on
    decay_factor: float = 1.0


@dataclass(frozen=True)
class Block:
    """Conv (D) or ConvTranspose (G) with stride 1 and padding 0, then BatchNorm, then per-channel PReLU."""

    channels: int
    kernel: int
    bn_momentum: float


class _Genes:
    """What both chromosome types share: canonical JSON and an id hashed from it."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    @property
    def id(self) -> str:
        """Content hash: the same genes always give the same id, across runs and machines."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Chromosome(_Genes):
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

    @classmethod
    def from_json(cls, text: str) -> Chromosome:
        d = json.loads(text)
        for key in ("g_blocks", "d_blocks"):
            d[key] = tuple(Block(**b) for b in d[key])
        return cls(**d)

    @property
    def d_feature_side(self) -> int:
        """Side of D's last feature map, which is flattened into the FC hidden layer."""
        return self.image_size - sum(b.kernel - 1 for b in self.d_blocks)

    # The genes seed-v1 fixes, named as v2 names them (properties: the JSON and the id stay as they were).
    space = "seed-v1"
    loss = "bce"

    @property
    def noise_shape(self) -> tuple[int, int, int]:
        return self.noise_channels, self.noise_side, self.noise_side

    @property
    def optimisers(self) -> tuple[Optimiser, Optimiser]:
        return Optimiser("sgd", self.g_lr, self.g_momentum), Optimiser("sgd", self.d_lr, self.d_momentum)


def _v1_param_counts(ch: Chromosome) -> tuple[int, int]:
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


def sample_block(rng: np.random.Generator, space: SpaceConfig, kernel: int) -> Block:
    return Block(
        channels=int(rng.integers(space.channels[0], space.channels[1] + 1)),
        kernel=kernel,
        bn_momentum=float(rng.uniform(*space.bn_momentum)),
    )


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _v1_sample(space: SpaceConfig, image_size: int, image_channels: int, rng: np.random.Generator) -> Chromosome:
    lo, hi = noise_sides(space, image_size)
    noise_side = int(rng.integers(lo, hi + 1))
    grow = image_size - noise_side
    depths = generator_depths(space, grow)  # never empty: config.check proved it for every noise side
    n_g = depths[rng.integers(len(depths))]
    g_kernels = growth_kernels(rng, n_g + 1, grow, *space.kernel)
    n_d = int(rng.integers(space.d_blocks[0], space.d_blocks[1] + 1))
    d_kernels = [int(k) for k in rng.integers(space.kernel[0], space.kernel[1] + 1, size=n_d)]
    return Chromosome(
        image_size=image_size,
        image_channels=image_channels,
        noise_channels=int(rng.integers(space.noise_channels[0], space.noise_channels[1] + 1)),
        noise_side=noise_side,
        g_blocks=tuple(sample_block(rng, space, k) for k in g_kernels[:-1]),
        g_out_kernel=g_kernels[-1],
        d_blocks=tuple(sample_block(rng, space, k) for k in d_kernels),
        d_hidden=int(rng.integers(space.d_hidden[0], space.d_hidden[1] + 1)),
        g_lr=_log_uniform(rng, *space.lr),
        g_momentum=float(rng.uniform(*space.momentum)),
        d_lr=_log_uniform(rng, *space.lr),
        d_momentum=float(rng.uniform(*space.momentum)),
        batch_size=space.batch_size,
    )


# ---------------------------------------------------------------------------------------------------------
# space v2


@dataclass(frozen=True)
class Conv:
    """Conv (D) or ConvTranspose (G), then normalisation, activation, an optional residual, an optional pooling.

    Padding is (kernel - 1) // 2: stride 1 keeps the side (odd kernels only), stride 2 doubles it in G and
    halves it in D. `norm` "none" gives the convolution a bias; BatchNorm or InstanceNorm (affine) replace it.
    """

    channels: int
    kernel: int
    stride: int  # 1 or 2
    norm: str  # batch | instance | none
    activation: str  # relu | leaky_relu (slope 0.2) | prelu (per channel) | sigmoid | tanh | swish | softplus
    skip: bool  # add the block's input, resized to the output's side and 1x1-convolved if its channels differ
    pool: str = "none"  # D only: none | max | avg, a 2x2 pooling with stride 2 after the block


@dataclass(frozen=True)
class Dense:
    """A fully connected layer, then BatchNorm1d or nothing (a bias), then an activation."""

    units: int
    norm: str  # batch | none
    activation: str


@dataclass(frozen=True)
class ChromosomeV2(_Genes):
    image_size: int
    image_channels: int
    noise_dim: int  # z ~ N(0, I), a noise_dim x 1 x 1 tensor
    g_fc: tuple[Dense, ...]  # on the noise vector, before the projection
    g_project: Conv  # ConvTranspose of the 1 x 1 input with kernel = G's start side: an FC layer, reshaped (DCGAN)
    g_blocks: tuple[Conv, ...]
    g_out: Conv  # to image_channels, no norm; activation tanh (real images in [-1, 1]) or sigmoid ([0, 1])
    d_blocks: tuple[Conv, ...]
    d_fc: tuple[Dense, ...]  # after D flattens its last feature map; then a linear layer to one score
    loss: str  # bce | wgan-gp | hinge (losses.py)
    g_opt: Optimiser
    d_opt: Optimiser
    label_smoothing: bool  # bce only: D's target for real images is 0.9
    feature_matching: bool  # G's loss adds the distance between D's mean features on real and fake images
    init: str  # default | normal: conv and linear weights from N(0, 0.02), norm scales from N(1, 0.02)
    separate_batches: bool  # D sees a real batch and a fake batch, rather than one mixed batch
    batch_size: int
    space: str = "v2"

    @classmethod
    def from_json(cls, text: str) -> ChromosomeV2:
        d = json.loads(text)
        for key in ("g_project", "g_out"):
            d[key] = Conv(**d[key])
        for key in ("g_blocks", "d_blocks"):
            d[key] = tuple(Conv(**b) for b in d[key])
        for key in ("g_fc", "d_fc"):
            d[key] = tuple(Dense(**b) for b in d[key])
        for key in ("g_opt", "d_opt"):
            d[key] = Optimiser(**d[key])
        return cls(**d)

    @property
    def noise_shape(self) -> tuple[int, int, int]:
        return self.noise_dim, 1, 1

    @property
    def optimisers(self) -> tuple[Optimiser, Optimiser]:
        return self.g_opt, self.d_opt

    @property
    def upsamplings(self) -> int:
        return sum(layer.stride == 2 for layer in (*self.g_blocks, self.g_out))

    @property
    def d_sides(self) -> list[int]:
        """The side after each D block."""
        sides, side = [], self.image_size
        for b in self.d_blocks:
            side = layer_side(side, b, transposed=False)
            sides.append(side)
        return sides

    @property
    def d_features(self) -> int:
        """D's flattened features: what its FC layers (or its score) see, and what feature matching compares."""
        if not self.d_blocks:
            return self.image_channels * self.image_size**2
        return self.d_blocks[-1].channels * self.d_sides[-1] ** 2


Genome = Chromosome | ChromosomeV2


def from_json(text: str) -> Genome:
    """Either chromosome type from its JSON; a v2 chromosome's JSON says "space": "v2"."""
    return ChromosomeV2.from_json(text) if json.loads(text).get("space") == "v2" else Chromosome.from_json(text)


def layer_side(side: int, layer: Conv, transposed: bool) -> int:
    """The side after one v2 layer (the formulas of torch's Conv2d, ConvTranspose2d and 2x2 pooling)."""
    k, p = layer.kernel, (layer.kernel - 1) // 2
    if transposed:  # output_padding = 2 + 2p - k at stride 2 (model.py), so stride 2 doubles exactly
        side = 2 * side if layer.stride == 2 else side + k - 1 - 2 * p
    else:
        side = (side + 2 * p - k) // layer.stride + 1
    return side // 2 if layer.pool != "none" else side


def g_sides(ch: ChromosomeV2) -> list[int]:
    """The side after G's projection, each block and the output layer; the last one is the image side."""
    sides = [ch.g_project.kernel]
    for layer in (*ch.g_blocks, ch.g_out):
        sides.append(layer_side(sides[-1], layer, transposed=True))
    return sides


def _conv_params(c_in: int, b: Conv) -> int:
    c = b.channels
    n = c_in * c * b.kernel**2 + (c if b.norm == "none" else 2 * c)  # weight, then bias or the norm's scale and shift
    n += c if b.activation == "prelu" else 0  # one slope per channel
    return n + (c_in * c if b.skip and c_in != c else 0)  # the 1x1 convolution on the skip path


def _dense_params(n_in: int, d: Dense) -> int:
    return n_in * d.units + (d.units if d.norm == "none" else 2 * d.units) + (d.units if d.activation == "prelu" else 0)


def _v2_param_counts(ch: ChromosomeV2) -> tuple[int, int]:
    g, n = 0, ch.noise_dim
    for d in ch.g_fc:
        g, n = g + _dense_params(n, d), d.units
    for b in (ch.g_project, *ch.g_blocks, ch.g_out):
        g, n = g + _conv_params(n, b), b.channels
    d_params, c = 0, ch.image_channels
    for b in ch.d_blocks:
        d_params, c = d_params + _conv_params(c, b), b.channels
    n = ch.d_features
    for d in ch.d_fc:
        d_params, n = d_params + _dense_params(n, d), d.units
    return g, d_params + n + 1  # the score: a linear layer to 1


def param_counts(ch: Genome) -> tuple[int, int]:
    """Trainable parameters of (G, D), computed from the genes; model.py builds exactly these."""
    return _v2_param_counts(ch) if isinstance(ch, ChromosomeV2) else _v1_param_counts(ch)


def pick(rng: np.random.Generator, options: tuple | list):
    return options[int(rng.integers(len(options)))]


def int_in(rng: np.random.Generator, lo_hi: tuple[int, int]) -> int:
    return int(rng.integers(lo_hi[0], lo_hi[1] + 1))


def conv_kernels(space: SpaceV2, stride: int) -> tuple[int, ...]:
    """Kernels a layer of this stride may have: stride 1 keeps the side only with an odd kernel."""
    return space.kernels if stride == 2 else odd_kernels(space)


def dense_norms(space: SpaceV2) -> tuple[str, ...]:
    """InstanceNorm needs a feature map; FC layers take BatchNorm or nothing."""
    return tuple(n for n in space.norms if n != "instance") or ("none",)


def sample_conv(rng: np.random.Generator, space: SpaceV2, stride: int, activations: tuple[str, ...],
                pool: str = "none", max_channels: int | None = None) -> Conv:
    hi = space.channels[1] if max_channels is None else min(space.channels[1], max_channels)
    return Conv(channels=int_in(rng, (space.channels[0], hi)), kernel=pick(rng, conv_kernels(space, stride)),
                stride=stride, norm=pick(rng, space.norms), activation=pick(rng, activations),
                skip=pick(rng, space.skips), pool=pool)


def sample_dense(rng: np.random.Generator, space: SpaceV2, activations: tuple[str, ...]) -> Dense:
    return Dense(int_in(rng, space.fc_units), pick(rng, dense_norms(space)), pick(rng, activations))


def sample_optimiser(rng: np.random.Generator, space: SpaceV2) -> Optimiser:
    name = pick(rng, space.optimisers)
    lr, momentum = (space.sgd_lr, space.sgd_momentum) if name == "sgd" else (space.adam_lr, space.adam_beta1)
    opt = Optimiser(name, _log_uniform(rng, *lr), float(rng.uniform(*momentum)))
    if pick(rng, space.schedules) == "step":
        opt = dataclasses.replace(opt, decay_epoch=int_in(rng, space.decay_epoch),
                                  decay_factor=float(rng.uniform(*space.decay_factor)))
    return opt


def sample_label_smoothing(rng: np.random.Generator, space: SpaceV2, loss: str) -> bool:
    return pick(rng, space.label_smoothing) if loss == "bce" else False


def max_last_channels(space: SpaceV2, image_size: int, halvings: int) -> int:
    """The most channels D's last block may have so that its flattened features stay within space.max_flatten,
    whatever its kernels (each halving leaves at most ceil(side / 2))."""
    return space.max_flatten // halved_side(image_size, halvings) ** 2


def d_halvings(ch: ChromosomeV2) -> int:
    return sum((b.stride == 2) + (b.pool != "none") for b in ch.d_blocks)


def _v2_generator(space: SpaceV2, size: int, channels: int, rng: np.random.Generator) -> dict:
    """G's genes: a block count and a number u of stride-2 layers such that start side x 2**u = image side."""
    n = pick(rng, v2_generator_depths(space, size))
    u = pick(rng, v2_upsamplings(space, size, n))
    strides = [1] * (n + 1)  # the blocks, then the output layer
    for i in rng.choice(n + 1, size=u, replace=False):
        strides[int(i)] = 2
    return dict(
        g_project=Conv(int_in(rng, space.channels), kernel=size >> u, stride=1, norm=pick(rng, space.norms),
                       activation=pick(rng, space.g_activations), skip=False),
        g_blocks=tuple(sample_conv(rng, space, st, space.g_activations) for st in strides[:-1]),
        g_out=Conv(channels, kernel=pick(rng, conv_kernels(space, strides[-1])), stride=strides[-1], norm="none",
                   activation=pick(rng, space.outputs), skip=False),
    )


def _v2_discriminator(space: SpaceV2, size: int, channels: int, rng: np.random.Generator) -> tuple[Conv, ...]:
    """D's blocks: h halvings (stride-2 convolutions and poolings), enough that the last block's features fit
    space.max_flatten; the last block's channels are drawn up to the bound."""
    n = pick(rng, v2_discriminator_depths(space, size, channels))
    h = pick(rng, v2_halvings(space, size, channels, n))
    stride2 = [1 not in space.strides] * n  # forced where stride 1 (or no pooling) is not on offer
    pooled = ["none" not in space.pools] * n
    optional = ([(i, "stride") for i in range(n)] if set(space.strides) == {1, 2} else []) + \
               ([(i, "pool") for i in range(n)] if "none" in space.pools and len(set(space.pools)) > 1 else [])
    for j in rng.choice(len(optional), size=h - sum(stride2) - sum(pooled), replace=False):
        i, kind = optional[int(j)]
        (stride2 if kind == "stride" else pooled)[i] = True
    pools = tuple(p for p in space.pools if p != "none")
    return tuple(
        sample_conv(rng, space, 2 if stride2[i] else 1, space.d_activations, pick(rng, pools) if pooled[i] else "none",
                    max_channels=max_last_channels(space, size, h) if i == n - 1 else None)
        for i in range(n))


def _v2_sample(space: SpaceV2, size: int, channels: int, rng: np.random.Generator) -> ChromosomeV2:
    loss = pick(rng, space.losses)
    return ChromosomeV2(
        image_size=size,
        image_channels=channels,
        noise_dim=int_in(rng, space.noise_dim),
        g_fc=tuple(sample_dense(rng, space, space.g_activations) for _ in range(int_in(rng, space.g_fc))),
        **_v2_generator(space, size, channels, rng),
        d_blocks=_v2_discriminator(space, size, channels, rng),
        d_fc=tuple(sample_dense(rng, space, space.d_activations) for _ in range(int_in(rng, space.d_fc))),
        loss=loss,
        g_opt=sample_optimiser(rng, space),
        d_opt=sample_optimiser(rng, space),
        label_smoothing=sample_label_smoothing(rng, space, loss),
        feature_matching=pick(rng, space.feature_matching),
        init=pick(rng, space.inits),
        separate_batches=pick(rng, space.separate_batches),
        batch_size=space.batch_size,
    )


def sample_one(space: SpaceConfig | SpaceV2, image_size: int, image_channels: int,
               rng: np.random.Generator) -> Genome:
    """One chromosome uniformly from the space (learning rates log-uniform), ignoring max_params."""
    if isinstance(space, SpaceV2):
        return _v2_sample(space, image_size, image_channels, rng)
    return _v1_sample(space, image_size, image_channels, rng)


def dcgan(image_size: int, image_channels: int, batch_size: int = 64, width: int = 64, noise_dim: int = 100,
          label_smoothing: bool = False) -> ChromosomeV2:
    """The DCGAN of Radford et al. (2016) as a v2 chromosome: at 64px, z of 100 -> 512x4x4 -> 256x8x8 -> 128x16x16
    -> 64x32x32 -> 3x64x64 with 4x4 stride-2 ConvTransposes, BatchNorm and ReLU, tanh out; D the mirror image with
    4x4 stride-2 convolutions and LeakyReLU(0.2), BatchNorm from its second block, then a linear score of its
    512x4x4 features (what DCGAN's final 4x4 convolution computes). Adam(2e-4, beta1 0.5) for both, N(0, 0.02)
    weights, BCE, real and fake batches apart.

    Other sizes: up to 4 doublings from a start side of at least 4 (32px: 4 -> 32 in 3; 200px: 25 -> 200 in 3).
    """
    u = 0
    while u < 4 and image_size % 2 ** (u + 1) == 0 and image_size >> (u + 1) >= 4:
        u += 1
    widths = [width * 2**i for i in reversed(range(u))] or [width]  # G's, from the projection on: 512, 256, 128, 64
    adam = Optimiser("adam", 2e-4, 0.5)
    return ChromosomeV2(
        image_size=image_size,
        image_channels=image_channels,
        noise_dim=noise_dim,
        g_fc=(),
        g_project=Conv(widths[0], kernel=image_size >> u, stride=1, norm="batch", activation="relu", skip=False),
        g_blocks=tuple(Conv(w, 4, 2, "batch", "relu", False) for w in widths[1:]),
        g_out=Conv(image_channels, 4, 2, "none", "tanh", False) if u else Conv(image_channels, 3, 1, "none", "tanh", False),
        d_blocks=tuple(Conv(w, 4, 2, "none" if i == 0 else "batch", "leaky_relu", False)
                       for i, w in enumerate(reversed(widths[:u]))),
        d_fc=(),
        loss="bce",
        g_opt=adam,
        d_opt=adam,
        label_smoothing=label_smoothing,
        feature_matching=False,
        init="normal",
        separate_batches=True,
        batch_size=batch_size,
    )


SEEDS = {"dcgan": dcgan}  # the fixed chromosomes evolve.seed_chromosomes may name


class SpaceTooTight(RuntimeError):
    """max_params rejects nearly every chromosome of the space."""


def sample(space: SpaceConfig | SpaceV2, image_size: int, image_channels: int, rng: np.random.Generator,
           max_tries: int = 10_000) -> tuple[Genome, int]:
    """A chromosome within max_params, and how many larger ones were drawn and rejected first."""
    for rejected in range(max_tries):
        ch = sample_one(space, image_size, image_channels, rng)
        if space.max_params is None or sum(param_counts(ch)) <= space.max_params:
            return ch, rejected
    raise SpaceTooTight(
        f"space.max_params: {max_tries} samples in a row had more than {space.max_params} parameters; "
        f"raise it or narrow space.channels / space.{'fc_units' if isinstance(space, SpaceV2) else 'd_hidden'}")
