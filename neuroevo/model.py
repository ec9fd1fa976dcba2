"""Chromosome -> torch modules. Every layer is stride 1, padding 0, so each kernel k moves the side by k - 1."""

from __future__ import annotations

import torch
from torch import nn

from neuroevo.genome import Block, Chromosome


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


def build(ch: Chromosome) -> tuple[Generator, Discriminator]:
    return Generator(ch), Discriminator(ch)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def noise(ch: Chromosome, n: int, generator: torch.Generator | None = None, device: str = "cpu") -> torch.Tensor:
    """G's input. shape: n x noise_channels x noise_side x noise_side"""
    return torch.randn(n, ch.noise_channels, ch.noise_side, ch.noise_side, generator=generator, device=device)
