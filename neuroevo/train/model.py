"""Layer plan -> torch modules: one Generator and one Discriminator for every search space.

The plan (architecture.py) says every layer's kind, channels, kernel, stride, padding, norm, activation, skip and
pooling; this file only turns each into modules, in the order the plan lists them, so parameter counts, FLOPs and
memory computed from the plan are those of the networks built here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from neuroevo.space import registry
from neuroevo.space.chromosome import Chromosome
from neuroevo.space.layer_plan import Layer, LayerPlan


def activation(name: str, channels: int) -> nn.Module:
    if name == "prelu":
        return nn.PReLU(channels, init=0.25)
    return {"none": nn.Identity, "relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "sigmoid": nn.Sigmoid,
            "tanh": nn.Tanh, "swish": nn.SiLU, "softplus": nn.Softplus}[name]()


def norm(layer: Layer) -> nn.Module:
    if layer.norm == "batch":
        bn = nn.BatchNorm1d if layer.kind == "linear" else nn.BatchNorm2d
        return bn(layer.c_out, momentum=layer.bn_momentum)
    if layer.norm == "instance":
        return nn.InstanceNorm2d(layer.c_out, affine=True)
    return nn.Identity()


class ConvBlock(nn.Module):
    """conv -> norm -> activation (+ the input, resized and 1x1-convolved when its shape differs) -> pooling."""

    def __init__(self, layer: Layer):
        super().__init__()
        if layer.kind == "conv_transpose":
            conv = nn.ConvTranspose2d(layer.c_in, layer.c_out, layer.kernel, layer.stride, layer.padding,
                                      output_padding=layer.output_padding, bias=layer.bias)
        else:
            conv = nn.Conv2d(layer.c_in, layer.c_out, layer.kernel, layer.stride, layer.padding, bias=layer.bias)
        self.main = nn.Sequential(conv, norm(layer), activation(layer.activation, layer.c_out))
        self.skip = layer.skip
        self.shortcut = nn.Conv2d(layer.c_in, layer.c_out, 1, bias=False) if layer.projects_skip else nn.Identity()
        self.pool = {"none": nn.Identity, "max": lambda: nn.MaxPool2d(2), "avg": lambda: nn.AvgPool2d(2)}[layer.pool]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.main(x)
        if self.skip:
            if x.shape[-1] != y.shape[-1]:
                x = F.interpolate(x, size=y.shape[-2:], mode="nearest")
            y = y + self.shortcut(x)
        return self.pool(y)


def dense(layer: Layer) -> nn.Module:
    """A linear layer, its norm and activation; a bare nn.Linear when it has neither (a score)."""
    linear = nn.Linear(layer.c_in, layer.c_out, bias=layer.bias)
    if _bare(layer):
        return linear
    return nn.Sequential(linear, norm(layer), activation(layer.activation, layer.c_out))


def _bare(layer: Layer) -> bool:
    return layer.norm == "none" and layer.activation == "none"


class Generator(nn.Module):
    def __init__(self, plan: LayerPlan):
        super().__init__()
        self.fc = nn.Sequential(*(dense(layer) for layer in plan.g if layer.kind == "linear"))
        self.convs = nn.Sequential(*(ConvBlock(layer) for layer in plan.g if layer.kind != "linear"))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: N x noise (C x H x W) -> N x image, in the range of the output layer's activation."""
        if len(self.fc):
            h = self.fc(z.flatten(1))  # N x units
            z = h[:, :, None, None]  # N x units x 1 x 1
        return self.convs(z)


class Discriminator(nn.Module):
    """Scores images: a probability where the plan's score ends in a sigmoid (seed-v1), otherwise a logit (bce) or a
    critic value (wgan-gp, hinge)."""

    def __init__(self, plan: LayerPlan):
        super().__init__()
        self.convs = nn.Sequential(*(ConvBlock(layer) for layer in plan.d if layer.kind != "linear"))
        self.fc = nn.Sequential(*(dense(layer) for layer in plan.d if layer.kind == "linear"))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: N x image -> (the flattened features feature matching compares, N x d_features; the score, N)."""
        f = self.convs(x).flatten(1)
        return f, self.fc(f).view(-1)


@dataclass(frozen=True)
class LayerModules:
    """Where one layer of the plan lives in its network: its modules' names, the prefixes of their state_dict keys.
    A name whose module holds no tensor (an nn.Identity norm, a ReLU) has no key."""

    weights: str  # the convolution or linear layer
    norm: str | None
    activation: str | None
    shortcut: str | None  # ConvBlock's 1x1 projection of the residual


def layer_modules(plan: LayerPlan) -> tuple[tuple[LayerModules, ...], tuple[LayerModules, ...]]:
    """G's and D's layers, in the plan's order, as Generator and Discriminator name their modules."""

    def names(layers: tuple[Layer, ...]) -> tuple[LayerModules, ...]:
        out, fc, conv = [], 0, 0
        for layer in layers:
            if layer.kind == "linear":
                m = f"fc.{fc}"
                fc += 1
                out.append(LayerModules(m, None, None, None) if _bare(layer) else
                           LayerModules(f"{m}.0", f"{m}.1", f"{m}.2", None))
            else:
                m = f"convs.{conv}"
                conv += 1
                out.append(LayerModules(f"{m}.main.0", f"{m}.main.1", f"{m}.main.2", f"{m}.shortcut"))
        return tuple(out)

    return names(plan.g), names(plan.d)


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


def spectrally_normed(module: nn.Module) -> nn.Module:
    """Every conv and linear weight of the module divided by its largest singular value, estimated by one power
    iteration per training forward (Miyato et al. 2018; ConvTranspose along its output channels, as torch does)."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            spectral_norm(m)
    return module


def build(ch: Chromosome) -> tuple[Generator, Discriminator]:
    plan = registry.plan(ch)
    G, D = Generator(plan), Discriminator(plan)
    if plan.init == "normal":
        dcgan_init(G), dcgan_init(D)
    # after the init: spectral norm's power iteration starts from the weights it normalises
    if plan.spectral_norm in ("d", "both"):
        spectrally_normed(D)
    if plan.spectral_norm == "both":
        spectrally_normed(G)
    return G, D


def build_generator(ch: Chromosome) -> Generator:
    plan = registry.plan(ch)
    G = Generator(plan)
    return spectrally_normed(G) if plan.spectral_norm == "both" else G


def load_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load weights saved from a network of the same plan. Files whose networks named their modules otherwise (seed-v1
    networks saved as one nn.Sequential) hold the same tensors in the same order and shapes, so they are matched by
    position."""
    own = module.state_dict()
    if state.keys() != own.keys() and len(state) == len(own) and all(
            a.shape == b.shape for a, b in zip(state.values(), own.values())):
        state = dict(zip(own.keys(), state.values()))
    module.load_state_dict(state)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def noise(ch: Chromosome, n: int, generator: torch.Generator | None = None, device: str = "cpu") -> torch.Tensor:
    """G's input. shape: n x noise_shape (seed-v1: noise_channels x noise_side x noise_side; v2: noise_dim x 1 x 1)"""
    return torch.randn(n, *ch.noise_shape, generator=generator, device=device)
