"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"): the same random,
differentiable transformations of every batch D sees, real and fake, in D's step and in G's, so that D cannot
memorise a small training set and G's gradients pass through the transformation.

Follows the authors' reference code (DiffAugment_pytorch.py): color is a random brightness, saturation and contrast;
translation shifts each image by up to 1/8 of its side, filling with zeros; cutout zeroes a random square of half the
side. Every random number comes from the torch.Generator given, drawn on the CPU: the same seed gives the same
augmentation on every device.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def _uniform(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One number in [0, 1) per image, shaped to broadcast over it. shape: N x 1 x 1 x 1"""
    return torch.rand(x.shape[0], 1, 1, 1, generator=generator).to(x.device, x.dtype)


def _offsets(x: torch.Tensor, low: int, high: int, generator: torch.Generator) -> torch.Tensor:
    """One whole number in [low, high) per image. shape: N x 1 x 1"""
    return torch.randint(low, high, (x.shape[0], 1, 1), generator=generator).to(x.device)


def rand_brightness(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return x + (_uniform(x, g) - 0.5)


def rand_saturation(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)  # N x 1 x H x W: the grey of each pixel
    return (x - mean) * (_uniform(x, g) * 2) + mean


def rand_contrast(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # N x 1 x 1 x 1
    return (x - mean) * (_uniform(x, g) + 0.5) + mean


def rand_translation(x: torch.Tensor, g: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    shift_h, shift_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy, dx = _offsets(x, -shift_h, shift_h + 1, g), _offsets(x, -shift_w, shift_w + 1, g)
    batch, rows, cols = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(h, device=x.device),
                                       torch.arange(w, device=x.device), indexing="ij")  # each N x H x W
    # read pixel (row + dy, col + dx) of the image padded with one ring of zeros, where everything shifted out lands
    rows = torch.clamp(rows + dy + 1, 0, h + 1)
    cols = torch.clamp(cols + dx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)  # N x (H+2) x (W+2) x C
    return padded[batch, rows, cols].permute(0, 3, 1, 2)  # N x C x H x W


def rand_cutout(x: torch.Tensor, g: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    size_h, size_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = _offsets(x, 0, h + (1 - size_h % 2), g)  # the square's centre
    left = _offsets(x, 0, w + (1 - size_w % 2), g)
    batch, rows, cols = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(size_h, device=x.device),
                                       torch.arange(size_w, device=x.device), indexing="ij")  # N x size_h x size_w
    rows = torch.clamp(rows + top - size_h // 2, 0, h - 1)
    cols = torch.clamp(cols + left - size_w // 2, 0, w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[batch, rows, cols] = 0
    return x * mask.unsqueeze(1)  # N x 1 x H x W over the channels


POLICIES: dict[str, tuple[Callable[[torch.Tensor, torch.Generator], torch.Tensor], ...]] = {
    "color": (rand_brightness, rand_saturation, rand_contrast),
    "translation": (rand_translation,),
    "cutout": (rand_cutout,),
}


class DiffAugment:
    """x -> x augmented by the policies of `policy` ('none', or names of POLICIES joined by commas), in order; a
    fresh draw from `generator` for every call. The identity for 'none', drawing nothing."""

    def __init__(self, policy: str, generator: torch.Generator):
        self.steps = [f for name in policy.split(",") if name != "none" for f in POLICIES[name]]
        self.generator = generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for f in self.steps:
            x = f(x, self.generator)
        return x
