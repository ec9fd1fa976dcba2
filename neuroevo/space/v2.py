"""The search space `v2`: per-layer genes (strided convolutions, pooling, skips, norms, activations), FC layers at
G's input and D's output, the loss, an optimiser per network, the stable-GAN practices, and the modern small-scale
recipe: spectral norm, an EMA of G, DiffAugment, R1, n_critic (README "Search space v2").

Every chromosome builds, by construction: every convolution pads (k - 1) // 2, so a stride-1 layer (odd k) keeps the
side, a stride-2 ConvTranspose doubles it exactly and a stride-2 Conv or a 2x2 pooling halves it. G draws how many of
its layers double so that its start side doubles to the image side; D draws how many halvings bring its flattened
features under space.max_flatten. Mutation moves strides and poolings but never changes how many there are.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, Field
from pydantic.dataclasses import dataclass as config_section
from pydantic_core import PydanticCustomError

from neuroevo.errors import ConfigError
from neuroevo.fields import (
    STRICT,
    Choices,
    CountRange,
    IntRange,
    LrRange,
    MomentumRange,
    PositiveInt,
    UnitRange,
    check_ranges,
)
from neuroevo.space.genes import (
    RECIPE_OFF,
    Genes,
    Optimiser,
    Recipe,
    int_in,
    log_uniform,
    pick,
    pick_drawn,
)
from neuroevo.space.layer_plan import Layer, LayerPlan
from neuroevo.space.variation import (
    Move,
    insert_at,
    other,
    perturb,
    remove_at,
    replace_at,
)

NAME = "v2"
SIZE_KEYS = "space.channels / space.fc_units"  # what to narrow when max_params rejects nearly everything


def losses(space: V2Space) -> tuple[str, ...]:
    """The losses its chromosomes draw from (mutation too)."""
    return space.losses


# The gene values of space v2 (model.py and losses.py implement each one).
Activation = Literal["relu", "leaky_relu", "prelu", "sigmoid", "tanh", "swish", "softplus"]
Norm = Literal["batch", "instance", "none"]
Pool = Literal["none", "max", "avg"]
Output = Literal["tanh", "sigmoid"]  # G's output, with real images scaled to [-1, 1] or [0, 1]
Loss = Literal["bce", "wgan-gp", "hinge"]
OptimiserName = Literal["sgd", "adam"]
Schedule = Literal["none", "step"]
Init = Literal["default", "normal"]  # PyTorch's default, or N(0, 0.02) as DCGAN
SpectralNorm = Literal["none", "d", "both"]  # whose layers: none, D's, or G's and D's
AUGMENTS = ("color", "translation", "cutout")  # DiffAugment's policies (train/augment.py), in the order it applies them


def _augment_policy(v: str) -> str:
    """'none', or DiffAugment policies joined by commas, written in AUGMENTS' order."""
    names = v.split(",")
    if v == "none":
        return v
    if any(n not in AUGMENTS for n in names) or len(set(names)) < len(names):
        raise PydanticCustomError("augment_policy", "expected 'none' or DiffAugment policies from {allowed} joined by "
                                                    "commas, e.g. 'color,translation,cutout'",
                                  {"allowed": ", ".join(AUGMENTS)})
    return ",".join(p for p in AUGMENTS if p in names)


AugmentPolicy = Annotated[str, AfterValidator(_augment_policy)]


@config_section(frozen=True, config=STRICT)
class V2Space:
    """The search space `v2`: layers, norms, activations, loss, optimisers and GAN practices are all genes.

    Ranges are inclusive [min, max]; lists are choices, drawn uniformly. G: the noise z -> `g_fc` FC layers -> a
    projection to G's first feature map (a ConvTranspose of the 1x1 input whose kernel is the map's side, as DCGAN's
    first layer) -> `g_blocks` blocks -> an output layer to the image channels. D: `d_blocks` blocks -> flatten ->
    `d_fc` FC layers -> a linear score (no sigmoid: the losses read it). A block is a Conv (D) or ConvTranspose (G),
    then a norm, an activation, an optional skip connection and (D only) an optional pooling. Every combination
    builds, by construction: every convolution pads (k - 1) // 2, so a stride-1 layer keeps the side, a stride-2
    ConvTranspose doubles it and a stride-2 Conv or a pooling halves it. A space that leaves no valid choice is an
    error at start, naming the key.
    """

    name: Literal["v2"] = "v2"
    """The search space: `v2`, or `seed-v1` (the default)."""
    noise_dim: IntRange = (32, 128)
    """Length of G's noise vector z ~ N(0, I), a noise_dim x 1 x 1 tensor."""
    start_side: tuple[Annotated[int, Field(ge=2)], Annotated[int, Field(ge=2)]] = (4, 8)
    """Side of G's first feature map, which its stride-2 layers double.

    The sampler draws how many of G's layers double, u, such that the image side / 2^u is a whole number in this
    range: at 64 px, 4 -> 64 in four doublings or 8 -> 64 in three.
    """
    g_blocks: CountRange = (0, 4)
    """G's blocks between its projection and its output layer."""
    d_blocks: CountRange = (1, 5)
    """D's blocks before it flattens."""
    g_fc: CountRange = (0, 1)
    """FC layers on the noise vector, before G's projection."""
    d_fc: CountRange = (0, 1)
    """Hidden FC layers after D flattens, before its score."""
    channels: IntRange = (16, 256)
    """Output channels of each block and of G's projection.

    D's last block draws only up to what keeps its flattened features within `max_flatten`.
    """
    fc_units: IntRange = (64, 512)
    """Units of each FC layer."""
    kernels: Choices[PositiveInt] = (3, 4, 5)
    """Kernel sizes of blocks and G's output layer; odd ones at stride 1.

    A stride-1 layer keeps the side only with an odd kernel, so where `strides` holds 1 at least one must be odd.
    """
    strides: Choices[Literal[1, 2]] = (1, 2)
    """Strides: 1 keeps the side; 2 doubles it in G and halves it in D.

    G's stride-2 layers are ConvTransposes, D's Convs. Each layer's stride is drawn such that G reaches the image
    side and D's features fit `max_flatten`; mutation moves a stride 2 to another layer but never changes how many
    there are.
    """
    pools: Choices[Pool] = ("none", "max", "avg")
    """Pooling after D's blocks: `none`, or 2x2 `max` or `avg` (halves the side)."""
    skips: Choices[bool] = (False, True)
    """Residual connections around blocks: with (true) or without (false).

    A skip adds the block's input to its output, resized to the output's side (nearest neighbour) and 1x1-convolved
    where the channels differ.
    """
    norms: Choices[Norm] = ("batch", "instance", "none")
    """Norm after each convolution: `batch`, `instance` (affine) or `none`.

    Without a norm the convolution has a bias. G's output layer has none; FC layers draw `batch` or `none`.
    """
    g_activations: Choices[Activation] = ("relu", "leaky_relu", "prelu", "sigmoid", "tanh", "swish", "softplus")
    """Activations of G's FC layers, projection and blocks.

    `relu`, `leaky_relu` (slope 0.2), `prelu` (a slope per channel), `sigmoid`, `tanh`, `swish` (SiLU) or
    `softplus`.
    """
    d_activations: Choices[Activation] = ("relu", "leaky_relu", "prelu", "sigmoid", "tanh", "swish", "softplus")
    """Activations of D's blocks and FC layers; the names of `g_activations`."""
    outputs: Choices[Output] = ("tanh", "sigmoid")
    """G's output activation: `tanh` (images in [-1, 1]) or `sigmoid` ([0, 1])."""
    losses: Choices[Loss] = ("bce", "wgan-gp", "hinge")
    """GAN losses: `bce` (on logits), `wgan-gp` (penalty weight 10) or `hinge`.

    Each does `n_critic` D steps per G step (`n_critics`). The fitness's loss term reads each loss's own quantity
    (bce: L_D and L_G; hinge: L_D; wgan-gp: |L_D|), so a population that mixes losses ranks them on that footing,
    not on sample quality: narrow this to one loss to compare like with like.
    """
    optimisers: Choices[OptimiserName] = ("sgd", "adam")
    """Optimiser of each network, G's and D's drawn apart: `sgd` or `adam`."""
    sgd_lr: LrRange = (1e-5, 1e-4)
    """SGD's learning rate, log-uniform; the reference experiment's range."""
    sgd_momentum: MomentumRange = (0.05, 0.9)
    """SGD's momentum; the reference experiment's range."""
    adam_lr: LrRange = (1e-4, 4e-4)
    """Adam's learning rate, log-uniform; around DCGAN's 2e-4."""
    adam_beta1: MomentumRange = (0.3, 0.7)
    """Adam's beta1, around DCGAN's 0.5; beta2 is 0.999."""
    schedules: Choices[Schedule] = ("none", "step")
    """Each optimiser's learning-rate schedule: `none`, or `step` (one decay).

    `step`: the rate x `decay_factor` after `decay_epoch` epochs.
    """
    decay_epoch: IntRange = (1, 5)
    """Epochs a `step` schedule trains at its full rate; below `train.epochs`.

    A decay after the last epoch would never happen: such a range is an error at start.
    """
    decay_factor: UnitRange = (0.1, 0.5)
    """What a `step` schedule multiplies the learning rate by, once."""
    label_smoothing: Choices[bool] = (False, True)
    """One-sided label smoothing (true): D's real target is 0.9; bce only."""
    feature_matching: Choices[bool] = (False, True)
    """Feature matching (true): G also matches D's features on real images.

    G's loss adds the mean squared difference of D's mean features (its flattened last feature map) on the real and
    on the fake batch.
    """
    inits: Choices[Init] = ("default", "normal")
    """Weight initialisation: `default` (PyTorch's) or `normal` (DCGAN's).

    `normal`: convolution and linear weights from N(0, 0.02), norm scales from N(1, 0.02).
    """
    separate_batches: Choices[bool] = (False, True)
    """D sees real and fake in separate batches (true) or mixed (false).

    In a mixed batch, BatchNorm mixes real and fake statistics.
    """
    batch_size: Annotated[int, Field(ge=2)] = 64
    """Images per training batch, for every chromosome; at least 2."""
    max_flatten: PositiveInt = 8192
    """Most features D may flatten (channels x side x side).

    8192 is DCGAN's 512 x 4 x 4. D draws how many halvings its blocks make (stride-2 convolutions and poolings): at
    least enough that `channels`' minimum flattens within this bound, at most as many as keep every feature map at
    least 2 px.
    """
    max_params: PositiveInt | None = 50_000_000
    """Most parameters a chromosome may have (G's + D's); null: no bound.

    Larger chromosomes are drawn again, and each row logs how many were (`resampled`). Where 10,000 draws in a row
    are larger, the run stops, naming the keys to narrow.
    """
    spectral_norms: Choices[SpectralNorm] = ("none",)
    """Whose layers are spectral-normalised: `none`, `d` (D's) or `both`.

    Spectral normalisation (Miyato et al. 2018) divides each conv and linear weight by its spectral norm; `both`
    normalises G's and D's layers.
    """
    g_emas: Choices[Annotated[float, Field(ge=0, lt=1)]] = (0.0,)
    """Decay of an exponential moving average of G's weights; 0: none.

    Samples, FID and KID are drawn from the average, and the weights file holds it; 0: G as trained.
    """
    augments: Choices[AugmentPolicy] = ("none",)
    """DiffAugment policies applied to every image D sees; `none`: no augmentation.

    DiffAugment (Zhao et al. 2020) augments real and fake images before D, in D's and G's steps: `none`, or policies
    from `color`, `translation` and `cutout` joined by commas, e.g. `color,translation,cutout`.
    """
    r1_gammas: Choices[Annotated[float, Field(ge=0)]] = (0.0,)
    """Weight gamma of the R1 penalty on real images; 0: none.

    The penalty gamma/2 E||grad D(x)||^2 on real images x (Mescheder et al. 2018), added to D's loss.
    """
    n_critics: Choices[PositiveInt] = (1,)
    """D steps per G step, each on a real batch of its own."""


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
class V2Chromosome(Genes):
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
    space: str = NAME
    # the modern recipe (genes.Recipe), left out of the JSON where off (OMITTED): a chromosome that leaves them off has
    # the JSON, and the id, of one with no such genes
    spectral_norm: str = "none"  # none | d | both: whose layers are spectral-normalised
    g_ema: float = 0.0  # decay of the average of G's weights that samples are drawn from; 0: none
    augment: str = "none"  # none | DiffAugment policies joined by commas, e.g. color,translation,cutout
    r1_gamma: float = 0.0  # weight of the R1 penalty on real images; 0: none
    n_critic: int = 1  # D steps per G step

    OMITTED = RECIPE_OFF

    @property
    def recipe(self) -> Recipe:
        return Recipe(self.spectral_norm, self.g_ema, self.augment, self.r1_gamma, self.n_critic)

    @property
    def noise_shape(self) -> tuple[int, int, int]:
        return self.noise_dim, 1, 1

    @property
    def optimisers(self) -> tuple[Optimiser, Optimiser]:
        return self.g_opt, self.d_opt

    @property
    def upsamplings(self) -> int:
        return sum(layer.stride == 2 for layer in (*self.g_blocks, self.g_out))


Chromosome = V2Chromosome


def from_json(text: str) -> V2Chromosome:
    d = json.loads(text)
    for key in ("g_project", "g_out"):
        d[key] = Conv(**d[key])
    for key in ("g_blocks", "d_blocks"):
        d[key] = tuple(Conv(**b) for b in d[key])
    for key in ("g_fc", "d_fc"):
        d[key] = tuple(Dense(**b) for b in d[key])
    for key in ("g_opt", "d_opt"):
        d[key] = Optimiser(**d[key])
    return V2Chromosome(**d)


# --- the layer plan -------------------------------------------------------------------------------------------


def conv_layer(name: str, c_in: int, side: int, b: Conv, transposed: bool, padding: int | None = None) -> Layer:
    """One conv gene as a layer: the side arithmetic of torch's Conv2d, ConvTranspose2d and 2x2 pooling."""
    k, p = b.kernel, (b.kernel - 1) // 2 if padding is None else padding
    if transposed:  # output_padding = 2 + 2p - k makes a stride-2 layer double the side exactly
        out_pad = 2 + 2 * p - k if b.stride == 2 else 0
        out = (side - 1) * b.stride - 2 * p + k + out_pad
        return Layer(name, "conv_transpose", c_in, b.channels, side, out, k, b.stride, p, out_pad, b.norm,
                     activation=b.activation, skip=b.skip, pool=b.pool)
    out = (side + 2 * p - k) // b.stride + 1
    return Layer(name, "conv", c_in, b.channels, side, out, k, b.stride, p, norm=b.norm, activation=b.activation,
                 skip=b.skip, pool=b.pool)


def plan(ch: V2Chromosome) -> LayerPlan:
    g, n = [], ch.noise_dim
    for i, d in enumerate(ch.g_fc, 1):
        g.append(Layer(f"fc {i}", "linear", n, d.units, norm=d.norm, activation=d.activation))
        n = d.units
    # the projection: n x 1 x 1 -> g_project.channels x start side x start side
    g.append(conv_layer("project", n, 1, ch.g_project, transposed=True, padding=0))
    for i, b in enumerate(ch.g_blocks, 1):
        g.append(conv_layer(f"block {i}", g[-1].c_out, g[-1].side, b, transposed=True))
    g.append(conv_layer("output", g[-1].c_out, g[-1].side, ch.g_out, transposed=True))

    d, c, side = [], ch.image_channels, ch.image_size
    for i, b in enumerate(ch.d_blocks, 1):
        d.append(conv_layer(f"block {i}", c, side, b, transposed=False))
        c, side = b.channels, d[-1].side
    n = c * side**2  # flattened
    for i, dense in enumerate(ch.d_fc, 1):
        d.append(Layer(f"fc {i}", "linear", n, dense.units, norm=dense.norm, activation=dense.activation))
        n = dense.units
    d.append(Layer("score", "linear", n, 1))  # a logit (bce) or a critic value (wgan-gp, hinge): the losses read it
    size = ch.image_size
    return LayerPlan(ch.noise_shape, (ch.image_channels, size, size), tuple(g), tuple(d), ch.init, ch.spectral_norm)


def g_sides(ch: V2Chromosome) -> list[int]:
    """The side after G's projection, each block and the output layer; the last one is the image side."""
    return [layer.side for layer in plan(ch).g if layer.kind != "linear"]


def d_sides(ch: V2Chromosome) -> list[int]:
    """The side after each D block."""
    return [layer.side for layer in plan(ch).d if layer.kind != "linear"]


def d_halvings(ch: V2Chromosome) -> int:
    return sum((b.stride == 2) + (b.pool != "none") for b in ch.d_blocks)


# --- validity -------------------------------------------------------------------------------------------------


def odd_kernels(space: V2Space) -> tuple[int, ...]:
    return tuple(k for k in space.kernels if k % 2 == 1)


def upsamplings(space: V2Space, size: int, n_blocks: int) -> list[int]:
    """Counts u of stride-2 layers among G's n_blocks blocks and its output layer such that G's start side,
    size / 2**u, is a whole number within space.start_side."""
    layers = n_blocks + 1
    lo = layers if 1 not in space.strides else 0
    hi = layers if 2 in space.strides else 0
    return [u for u in range(lo, min(hi, size.bit_length()) + 1)
            if size % 2**u == 0 and space.start_side[0] <= size >> u <= space.start_side[1]]


def generator_depths(space: V2Space, size: int) -> list[int]:
    return [n for n in range(space.g_blocks[0], space.g_blocks[1] + 1) if upsamplings(space, size, n)]


def halved_side(size: int, halvings: int) -> int:
    """The largest side D's feature map can have after `halvings` halvings of a size x size image."""
    return -(-size // 2**halvings)


def halvings(space: V2Space, size: int, image_channels: int, n_blocks: int) -> range:
    """How many halvings n_blocks D blocks may make (each block: a stride-2 conv, a pooling, or both): at least
    enough that space.channels[0] channels flatten to at most space.max_flatten features, at most as many as keep
    every feature map at least 2px (InstanceNorm and 2x2 pooling need that)."""
    if n_blocks == 0:
        return range(1) if image_channels * size**2 <= space.max_flatten else range(0)
    per_block_forced = (1 not in space.strides) + ("none" not in space.pools)
    per_block_optional = (set(space.strides) == {1, 2}) + ("none" in space.pools and len(set(space.pools)) > 1)
    hi = min(n_blocks * (per_block_forced + per_block_optional), size.bit_length() - 2)
    lo = next((h for h in range(hi + 1) if space.channels[0] * halved_side(size, h) ** 2 <= space.max_flatten), hi + 1)
    return range(max(lo, n_blocks * per_block_forced), hi + 1)


def discriminator_depths(space: V2Space, size: int, image_channels: int) -> list[int]:
    return [n for n in range(space.d_blocks[0], space.d_blocks[1] + 1)
            if len(halvings(space, size, image_channels, n))]


def check(s: V2Space, image_size: int, image_channels: int, epochs: int) -> None:
    """Relations between the space's keys, the image and the training, as one-line ConfigErrors naming the key."""
    check_ranges(s, ("noise_dim", "start_side", "g_blocks", "d_blocks", "g_fc", "d_fc", "channels", "fc_units",
                     "sgd_lr", "sgd_momentum", "adam_lr", "adam_beta1", "decay_epoch", "decay_factor"))
    size = image_size
    if 1 in s.strides and not odd_kernels(s):
        raise ConfigError(f"space.kernels: stride-1 layers keep the side with padding (k-1)/2, which needs an odd "
                          f"kernel (got {list(s.kernels)}); add one or set space.strides: [2]")
    if not generator_depths(s, size):
        reachable = [size >> u for u in range(size.bit_length()) if size % 2**u == 0 and size >> u >= 2]
        raise ConfigError(
            f"space.start_side: G cannot reach {size}px from a start side in {list(s.start_side)} by doubling, with "
            f"{list(s.g_blocks)} blocks (space.g_blocks) and strides {list(s.strides)}; start sides that double to "
            f"{size}px: {reachable}")
    if not discriminator_depths(s, size, image_channels):
        raise ConfigError(
            f"space.max_flatten: no D of {list(s.d_blocks)} blocks (space.d_blocks) with strides {list(s.strides)} and "
            f"pools {list(s.pools)} brings a {size}px image under {s.max_flatten} flattened features with at least "
            f"{s.channels[0]} channels while keeping every feature map at least 2px")
    if "bce" not in s.losses and False not in s.label_smoothing:
        raise ConfigError(f"space.label_smoothing: only the bce loss smooths labels, and space.losses is {list(s.losses)}")
    if "step" in s.schedules and s.decay_epoch[1] >= epochs:
        raise ConfigError(f"space.decay_epoch: a decay after epoch {s.decay_epoch[1]} never happens in train.epochs="
                          f"{epochs}; lower it or set space.schedules: [none]")


# --- sampling -------------------------------------------------------------------------------------------------


def conv_kernels(space: V2Space, stride: int) -> tuple[int, ...]:
    """Kernels a layer of this stride may have: stride 1 keeps the side only with an odd kernel."""
    return space.kernels if stride == 2 else odd_kernels(space)


def dense_norms(space: V2Space) -> tuple[str, ...]:
    """InstanceNorm needs a feature map; FC layers take BatchNorm or nothing."""
    return tuple(n for n in space.norms if n != "instance") or ("none",)


def sample_conv(rng: np.random.Generator, space: V2Space, stride: int, activations: tuple[str, ...],
                pool: str = "none", max_channels: int | None = None) -> Conv:
    hi = space.channels[1] if max_channels is None else min(space.channels[1], max_channels)
    return Conv(channels=int_in(rng, (space.channels[0], hi)), kernel=pick(rng, conv_kernels(space, stride)),
                stride=stride, norm=pick(rng, space.norms), activation=pick(rng, activations),
                skip=pick(rng, space.skips), pool=pool)


def sample_dense(rng: np.random.Generator, space: V2Space, activations: tuple[str, ...]) -> Dense:
    return Dense(int_in(rng, space.fc_units), pick(rng, dense_norms(space)), pick(rng, activations))


def sample_optimiser(rng: np.random.Generator, space: V2Space) -> Optimiser:
    name = pick(rng, space.optimisers)
    lr, momentum = (space.sgd_lr, space.sgd_momentum) if name == "sgd" else (space.adam_lr, space.adam_beta1)
    opt = Optimiser(name, log_uniform(rng, *lr), float(rng.uniform(*momentum)))
    if pick(rng, space.schedules) == "step":
        opt = dataclasses.replace(opt, decay_epoch=int_in(rng, space.decay_epoch),
                                  decay_factor=float(rng.uniform(*space.decay_factor)))
    return opt


def sample_label_smoothing(rng: np.random.Generator, space: V2Space, loss: str) -> bool:
    return pick(rng, space.label_smoothing) if loss == "bce" else False


def max_last_channels(space: V2Space, image_size: int, halvings: int) -> int:
    """The most channels D's last block may have so that its flattened features stay within space.max_flatten,
    whatever its kernels (each halving leaves at most ceil(side / 2))."""
    return space.max_flatten // halved_side(image_size, halvings) ** 2


def _generator(space: V2Space, size: int, channels: int, rng: np.random.Generator) -> dict:
    """G's genes: a block count and a number u of stride-2 layers such that start side x 2**u = image side."""
    n = pick(rng, generator_depths(space, size))
    u = pick(rng, upsamplings(space, size, n))
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


def _discriminator(space: V2Space, size: int, channels: int, rng: np.random.Generator) -> tuple[Conv, ...]:
    """D's blocks: h halvings (stride-2 convolutions and poolings), enough that the last block's features fit
    space.max_flatten; the last block's channels are drawn up to the bound."""
    n = pick(rng, discriminator_depths(space, size, channels))
    h = pick(rng, halvings(space, size, channels, n))
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


def sample_recipe(rng: np.random.Generator, space: V2Space) -> dict:
    """The recipe's genes, each drawn only where its list offers a choice: a space that does not search them draws
    every other gene as one without them would."""
    return dict(spectral_norm=pick_drawn(rng, space.spectral_norms), g_ema=pick_drawn(rng, space.g_emas),
                augment=pick_drawn(rng, space.augments), r1_gamma=pick_drawn(rng, space.r1_gammas),
                n_critic=pick_drawn(rng, space.n_critics))


def sample(space: V2Space, size: int, channels: int, rng: np.random.Generator) -> V2Chromosome:
    loss = pick(rng, space.losses)
    return V2Chromosome(
        image_size=size,
        image_channels=channels,
        noise_dim=int_in(rng, space.noise_dim),
        g_fc=tuple(sample_dense(rng, space, space.g_activations) for _ in range(int_in(rng, space.g_fc))),
        **_generator(space, size, channels, rng),
        d_blocks=_discriminator(space, size, channels, rng),
        d_fc=tuple(sample_dense(rng, space, space.d_activations) for _ in range(int_in(rng, space.d_fc))),
        loss=loss,
        g_opt=sample_optimiser(rng, space),
        d_opt=sample_optimiser(rng, space),
        label_smoothing=sample_label_smoothing(rng, space, loss),
        feature_matching=pick(rng, space.feature_matching),
        init=pick(rng, space.inits),
        separate_batches=pick(rng, space.separate_batches),
        batch_size=space.batch_size,
        **sample_recipe(rng, space),  # last: the draws before it are those of a space without the recipe
    )


def dcgan(image_size: int, image_channels: int, batch_size: int = 64, width: int = 64, noise_dim: int = 100,
          label_smoothing: bool = False) -> V2Chromosome:
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
    return V2Chromosome(
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


def dcgan_sn(image_size: int, image_channels: int, batch_size: int = 64) -> V2Chromosome:
    """A strong baseline: DCGAN's layers (dcgan) trained with the modern small-scale recipe. The hinge loss with
    spectral norm on D's layers and Adam(2e-4, beta1 0) for both networks (SNGAN, Miyato et al. 2018); samples from
    an EMA of G's weights with decay 0.999 (Karras et al. 2018); DiffAugment color,translation,cutout on every image
    D sees (Zhao et al. 2020)."""
    adam = Optimiser("adam", 2e-4, 0.0)
    return dataclasses.replace(dcgan(image_size, image_channels, batch_size), loss="hinge", g_opt=adam, d_opt=adam,
                               spectral_norm="d", g_ema=0.999, augment="color,translation,cutout")


# --- variation ------------------------------------------------------------------------------------------------

# Crossover's gene groups: each is valid with any other group. G's projection, blocks and output layer stay together,
# so that G still reaches the image side.
GROUPS = {
    "g": (("noise_dim",), ("g_fc",), ("g_project", "g_blocks", "g_out"), ("g_opt",)),
    "d": (("d_blocks",), ("d_fc",), ("d_opt",)),
    "training": (("loss", "label_smoothing"), ("feature_matching",), ("init",), ("separate_batches",)),
    "recipe": (("spectral_norm",), ("g_ema",), ("augment",), ("r1_gamma",), ("n_critic",)),
}


def moves(ch: V2Chromosome, s: V2Space, rng: np.random.Generator) -> dict[str, list[Move]]:
    """Every single change mutation may make, by kind (variation.mutate draws one). A block it adds keeps the side
    (stride 1, no pooling); D's last block never gets more channels than the flatten bound allows."""
    rep = dataclasses.replace
    found: dict[str, list[Move]] = {"gene": [], "add": [], "remove": [], "lr": []}
    gene = found["gene"]
    size, last_cap = ch.image_size, max_last_channels(s, ch.image_size, d_halvings(ch))

    def field(name: str, options, current=None) -> None:
        for v in other(rng, options, getattr(ch, name) if current is None else current):
            gene.append(lambda v=v: rep(ch, **{name: v}))

    def layer(name: str, i: int | None, layer_, changes: dict) -> None:
        """Moves that redraw one gene of a layer (of the tuple `name` at i, or of the single layer `name`)."""
        for key, options in changes.items():
            for v in other(rng, options, getattr(layer_, key)):
                new = rep(layer_, **{key: v})
                gene.append(lambda new=new: rep(ch, **{name: new if i is None else replace_at(getattr(ch, name), i, new)}))

    def channels(hi: int) -> range:
        return range(s.channels[0], min(s.channels[1], hi) + 1)

    field("noise_dim", range(s.noise_dim[0], s.noise_dim[1] + 1))
    for name, acts in (("g_fc", s.g_activations), ("d_fc", s.d_activations)):
        for i, d in enumerate(getattr(ch, name)):
            layer(name, i, d, {"units": range(s.fc_units[0], s.fc_units[1] + 1), "norm": dense_norms(s),
                               "activation": acts})
    layer("g_project", None, ch.g_project, {"channels": channels(s.channels[1]), "norm": s.norms,
                                            "activation": s.g_activations})
    for i, b in enumerate(ch.g_blocks):
        layer("g_blocks", i, b, {"channels": channels(s.channels[1]), "kernel": conv_kernels(s, b.stride),
                                 "norm": s.norms, "activation": s.g_activations, "skip": s.skips})
    layer("g_out", None, ch.g_out, {"kernel": conv_kernels(s, ch.g_out.stride), "activation": s.outputs})
    for i, b in enumerate(ch.d_blocks):
        pools = [p for p in s.pools if p != "none"] if b.pool != "none" else []  # pooling's kind, not whether
        layer("d_blocks", i, b, {"channels": channels(last_cap if i == len(ch.d_blocks) - 1 else s.channels[1]),
                                 "kernel": conv_kernels(s, b.stride), "norm": s.norms,
                                 "activation": s.d_activations, "skip": s.skips, "pool": pools})
    for loss in other(rng, s.losses, ch.loss):
        gene.append(lambda loss=loss: rep(ch, loss=loss, label_smoothing=sample_label_smoothing(rng, s, loss)))
    if ch.loss == "bce":
        field("label_smoothing", s.label_smoothing)
    field("feature_matching", s.feature_matching)
    field("init", s.inits)
    field("separate_batches", s.separate_batches)
    field("spectral_norm", s.spectral_norms)
    field("g_ema", s.g_emas)
    field("augment", s.augments)
    field("r1_gamma", s.r1_gammas)
    field("n_critic", s.n_critics)
    gene.append(lambda: rep(ch, g_opt=sample_optimiser(rng, s)))
    gene.append(lambda: rep(ch, d_opt=sample_optimiser(rng, s)))

    # Where G doubles and D halves: a stride 2 (or a pooling) moves to another layer. Their number, and so G's
    # start side and D's flatten bound, stay.
    if 1 in s.strides:
        for layers, in_g in (((*ch.g_blocks, ch.g_out), True), (ch.d_blocks, False)):
            twos = [i for i, b in enumerate(layers) if b.stride == 2]
            ones = [i for i, b in enumerate(layers) if b.stride == 1]
            if twos and ones:
                src, dst = pick(rng, twos), pick(rng, ones)
                gene.append(lambda in_g=in_g, src=src, dst=dst: _move(ch, in_g, "stride", src, dst, s, rng))
    pooled = [i for i, b in enumerate(ch.d_blocks) if b.pool != "none"]
    unpooled = [i for i, b in enumerate(ch.d_blocks) if b.pool == "none"]
    if pooled and unpooled:
        src, dst = pick(rng, pooled), pick(rng, unpooled)
        gene.append(lambda src=src, dst=dst: _move(ch, False, "pool", src, dst, s, rng))

    # Added blocks keep the side (stride 1, no pooling); removable blocks are those that keep it.
    if 1 in s.strides and len(ch.g_blocks) < s.g_blocks[1]:
        i = int_in(rng, (0, len(ch.g_blocks)))
        found["add"].append(lambda i=i: rep(ch, g_blocks=insert_at(ch.g_blocks, i, sample_conv(rng, s, 1, s.g_activations))))
    keeps_side = [i for i, b in enumerate(ch.g_blocks) if b.stride == 1]
    if keeps_side and len(ch.g_blocks) > s.g_blocks[0]:
        i = pick(rng, keeps_side)
        found["remove"].append(lambda i=i: rep(ch, g_blocks=remove_at(ch.g_blocks, i)))
    n_d = len(ch.d_blocks)
    if 1 in s.strides and "none" in s.pools and n_d < s.d_blocks[1]:
        i = int_in(rng, (0, n_d))
        cap = last_cap if i == n_d else None  # a new last block must fit the flatten bound
        if (cap is None or cap >= s.channels[0]) and (n_d or s.channels[0] * size**2 <= s.max_flatten):
            found["add"].append(lambda i=i, cap=cap: rep(ch, d_blocks=insert_at(
                ch.d_blocks, i, sample_conv(rng, s, 1, s.d_activations, max_channels=cap))))
    keeps_side = [i for i, b in enumerate(ch.d_blocks) if b.stride == 1 and b.pool == "none"
                  and (i < n_d - 1 or last_cap >= s.channels[0])]  # a new last block must fit the flatten bound
    if keeps_side and n_d > s.d_blocks[0] and (n_d > 1 or ch.image_channels * size**2 <= s.max_flatten):
        i = pick(rng, keeps_side)
        found["remove"].append(lambda i=i: _remove_d(ch, i, last_cap))
    for name, acts, (lo, hi) in (("g_fc", s.g_activations, s.g_fc), ("d_fc", s.d_activations, s.d_fc)):
        fc = getattr(ch, name)
        if len(fc) < hi:
            i = int_in(rng, (0, len(fc)))
            found["add"].append(lambda name=name, fc=fc, i=i, acts=acts:
                                rep(ch, **{name: insert_at(fc, i, sample_dense(rng, s, acts))}))
        if len(fc) > lo:
            i = int_in(rng, (0, len(fc) - 1))
            found["remove"].append(lambda name=name, fc=fc, i=i: rep(ch, **{name: remove_at(fc, i)}))

    def perturbed(opt):
        lo, hi = s.sgd_lr if opt.name == "sgd" else s.adam_lr
        return rep(opt, lr=perturb(rng, opt.lr, lo, hi))

    found["lr"].append(lambda: rep(ch, g_opt=perturbed(ch.g_opt), d_opt=perturbed(ch.d_opt)))
    return found


def _move(ch: V2Chromosome, in_g: bool, key: str, src: int, dst: int, s: V2Space, rng: np.random.Generator) -> V2Chromosome:
    """G's or D's layer `src` gives its stride 2 (key "stride") or its pooling (key "pool") to layer `dst`; a layer
    left with stride 1 gets an odd kernel."""
    layers = [*ch.g_blocks, ch.g_out] if in_g else list(ch.d_blocks)
    a, b = layers[src], layers[dst]
    if key == "pool":
        layers[src], layers[dst] = dataclasses.replace(a, pool="none"), dataclasses.replace(b, pool=a.pool)
    else:
        kernel = a.kernel if a.kernel % 2 else pick(rng, conv_kernels(s, 1))
        layers[src], layers[dst] = dataclasses.replace(a, stride=1, kernel=kernel), dataclasses.replace(b, stride=2)
    if in_g:
        return dataclasses.replace(ch, g_blocks=tuple(layers[:-1]), g_out=layers[-1])
    return dataclasses.replace(ch, d_blocks=tuple(layers))


def _remove_d(ch: V2Chromosome, i: int, last_cap: int) -> V2Chromosome:
    """D without its block i; a block that becomes the last keeps within the flatten bound."""
    blocks = remove_at(ch.d_blocks, i)
    if blocks and i == len(blocks):
        blocks = replace_at(blocks, i - 1, dataclasses.replace(blocks[-1], channels=min(blocks[-1].channels, last_cap)))
    return dataclasses.replace(ch, d_blocks=blocks)
