"""Chromosome -> torch modules.

seed-v1: every layer is stride 1, padding 0, so each kernel k moves the side by k - 1.
v2: every convolution has padding (k - 1) // 2, so stride 1 keeps the side and stride 2 doubles it (G) or halves it
(D); genome.layer_side is the arithmetic, and genome.param_counts counts exactly the parameters built here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neuroevo.genome import Block, Chromosome, ChromosomeV2, Conv, Dense, Genome


def _block(conv: type[nn.Conv2d] | type[nn.ConvTranspose2d], c_in: int, b: Block) -> list[nn.Module]:
    return [
        conv(c_in, b.channels, b.kernel, stride=1, padding=0, bias=False),  # BatchNorm's shift makes a bias redundant
        nn.BatchNorm2d(b.channels, momentum=b.bn_momentum, affine=True),
        nn.PReLU(b.channels, init=0.25),
    ]


class Generator(nn.Sequential):
    def __init__(self, ch: Chromosome):
        layers: list[nn.Module] = []
        c = ch.noise_channels
        for b in ch.g_blocks:
            layers += _block(nn.ConvTranspose2d, c, b)
            c = b.channels
        # state size. c x (image_size - g_out_kernel + 1)^2
        layers += [nn.ConvTranspose2d(c, ch.image_channels, ch.g_out_kernel), nn.Tanh()]
        # state size. image_channels x image_size x image_size, in [-1, 1]
        super().__init__(*layers)


class Discriminator(nn.Sequential):
    def __init__(self, ch: Chromosome):
        layers: list[nn.Module] = []
        c = ch.image_channels
        for b in ch.d_blocks:
            layers += _block(nn.Conv2d, c, b)
            c = b.channels
        # state size. c x d_feature_side x d_feature_side
        layers += [
            nn.Flatten(),
            nn.Linear(c * ch.d_feature_side**2, ch.d_hidden),
            nn.PReLU(ch.d_hidden, init=0.25),  # without it the two FC layers would collapse into one linear map
            nn.Linear(ch.d_hidden, 1),
            nn.Sigmoid(),
        ]
        # state size. 1, the probability that the input is real
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).view(-1)


# ---------------------------------------------------------------------------------------------------------
# space v2


def activation(name: str, channels: int) -> nn.Module:
    if name == "prelu":
        return nn.PReLU(channels, init=0.25)
    return {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
            "swish": nn.SiLU, "softplus": nn.Softplus}[name]()


def norm2d(name: str, channels: int) -> nn.Module:
    return {"batch": lambda: nn.BatchNorm2d(channels), "instance": lambda: nn.InstanceNorm2d(channels, affine=True),
            "none": nn.Identity}[name]()


class ConvBlock(nn.Module):
    """conv -> norm -> activation (+ the input, resized and 1x1-convolved when its shape differs) -> pooling."""

    def __init__(self, c_in: int, b: Conv, transposed: bool, padding: int | None = None):
        super().__init__()
        p = (b.kernel - 1) // 2 if padding is None else padding
        bias = b.norm == "none"  # a norm's shift makes a bias redundant
        if transposed:  # stride 2: output_padding makes the side exactly double
            conv = nn.ConvTranspose2d(c_in, b.channels, b.kernel, b.stride, p,
                                      output_padding=2 + 2 * p - b.kernel if b.stride == 2 else 0, bias=bias)
        else:
            conv = nn.Conv2d(c_in, b.channels, b.kernel, b.stride, p, bias=bias)
        self.main = nn.Sequential(conv, norm2d(b.norm, b.channels), activation(b.activation, b.channels))
        self.skip = b.skip
        self.shortcut = nn.Conv2d(c_in, b.channels, 1, bias=False) if b.skip and c_in != b.channels else nn.Identity()
        self.pool = {"none": nn.Identity(), "max": nn.MaxPool2d(2), "avg": nn.AvgPool2d(2)}[b.pool]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.main(x)
        if self.skip:
            if x.shape[-1] != y.shape[-1]:
                x = F.interpolate(x, size=y.shape[-2:], mode="nearest")
            y = y + self.shortcut(x)
        return self.pool(y)


def dense(n_in: int, d: Dense) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, d.units, bias=d.norm == "none"),
                         nn.BatchNorm1d(d.units) if d.norm == "batch" else nn.Identity(),
                         activation(d.activation, d.units))


class GeneratorV2(nn.Module):
    def __init__(self, ch: ChromosomeV2):
        super().__init__()
        fc, n = [], ch.noise_dim
        for d in ch.g_fc:
            fc.append(dense(n, d))
            n = d.units
        self.fc = nn.Sequential(*fc)
        # state size. n x 1 x 1 -> the projection: g_project.channels x start side x start side
        convs = [ConvBlock(n, ch.g_project, transposed=True, padding=0)]
        c = ch.g_project.channels
        for b in (*ch.g_blocks, ch.g_out):
            convs.append(ConvBlock(c, b, transposed=True))
            c = b.channels
        self.convs = nn.Sequential(*convs)
        # state size. image_channels x image_size x image_size, in the range of g_out's activation

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z.flatten(1))
        return self.convs(h.view(*h.shape, 1, 1))


class DiscriminatorV2(nn.Module):
    """Outputs a score per image (a logit for bce, a critic value for wgan-gp and hinge), not a probability."""

    def __init__(self, ch: ChromosomeV2):
        super().__init__()
        convs, c = [], ch.image_channels
        for b in ch.d_blocks:
            convs.append(ConvBlock(c, b, transposed=False))
            c = b.channels
        self.convs = nn.Sequential(*convs)
        # state size. d_blocks[-1].channels x d_sides[-1] x d_sides[-1], flattened to d_features
        fc, n = [], ch.d_features
        for d in ch.d_fc:
            fc.append(dense(n, d))
            n = d.units
        self.fc = nn.Sequential(*fc, nn.Linear(n, 1))

    def features_and_score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the flattened features feature matching compares, N x d_features; the score, N)."""
        f = self.convs(x).flatten(1)
        return f, self.fc(f).view(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_score(x)[1]


@torch.no_grad()
def dcgan_init(module: nn.Module) -> None:
    """DCGAN's weights_init: conv and linear weights from N(0, 0.02), norm scales from N(1, 0.02), shifts 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def build_generator(ch: Genome) -> nn.Module:
    return GeneratorV2(ch) if isinstance(ch, ChromosomeV2) else Generator(ch)


def build(ch: Genome) -> tuple[nn.Module, nn.Module]:
    if not isinstance(ch, ChromosomeV2):
        return Generator(ch), Discriminator(ch)
    G, D = GeneratorV2(ch), DiscriminatorV2(ch)
    if ch.init == "normal":
        dcgan_init(G), dcgan_init(D)
    return G, D


def output_range(ch: Genome) -> tuple[float, float]:
    """G's output range, to which real images are scaled: tanh's [-1, 1] or sigmoid's [0, 1]."""
    return (0.0, 1.0) if isinstance(ch, ChromosomeV2) and ch.g_out.activation == "sigmoid" else (-1.0, 1.0)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def noise(ch: Genome, n: int, generator: torch.Generator | None = None, device: str = "cpu") -> torch.Tensor:
    """G's input. shape: n x noise_shape (seed-v1: noise_channels x noise_side x noise_side; v2: noise_dim x 1 x 1)"""
    return torch.randn(n, *ch.noise_shape, generator=generator, device=device)
