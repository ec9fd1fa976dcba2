"""A chromosome's layer plan: every layer of G and D with its geometry, computed once from the genes.

The plan is the one description of a chromosome's networks. model.py builds its modules from it; the parameter
counts (here), the FLOPs (schedule.py), the activation memory (memory.py), the report's layer table and the log's
gene columns (report.py, logs.py) all read it. Each search space turns its chromosomes into a plan
(space/<name>.py: plan, asked through registry.plan), so a new gene changes one space's plan and nothing downstream.

Pure data, no torch: the driver plans, sizes and orders chromosomes without building a model.

Shapes: G takes noise of `noise` (C x H x W); its linear layers, if any, come first and act on the flattened noise,
whose result is reshaped to units x 1 x 1 for its convolutions. D takes an image of `image`; its convolutions come
first, then it flattens and its linear layers follow; its last layer is the score.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("linear", "conv", "conv_transpose")
NORMS = ("batch", "instance", "none")
POOLS = ("none", "max", "avg")


@dataclass(frozen=True)
class Layer:
    """A linear or convolutional layer, then a norm, then an activation, then (convolutions) a residual and a
    pooling. A layer without a norm has a bias; a norm's shift makes a bias redundant."""

    name: str  # as the report shows it: "fc 1", "project", "block 2", "output", "hidden", "score"
    kind: str  # linear | conv | conv_transpose
    c_in: int  # input channels; a linear layer's input features
    c_out: int  # output channels; a linear layer's units
    side_in: int = 1  # the input feature map's side (1 for a linear layer)
    side_out: int = 1  # the side after the convolution, before any pooling
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    output_padding: int = 0  # conv_transpose: what makes a stride-2 layer double the side exactly
    norm: str = "none"  # batch | instance (affine) | none
    bn_momentum: float = 0.1  # BatchNorm's running-statistics momentum (torch's default 0.1)
    activation: str = "none"  # none | relu | leaky_relu (0.2) | prelu (per channel, 0.25) | sigmoid | tanh | swish | softplus
    skip: bool = False  # adds its input, resized to side_out (nearest) and 1x1-convolved when c_in != c_out
    pool: str = "none"  # none | max | avg: a 2x2 pooling with stride 2 after the block

    @property
    def side(self) -> int:
        """The side of what the layer outputs, after pooling."""
        return self.side_out // 2 if self.pool != "none" else self.side_out

    @property
    def bias(self) -> bool:
        return self.norm == "none"

    @property
    def projects_skip(self) -> bool:
        """Whether the residual path has a 1x1 convolution (it does when the channels change)."""
        return self.skip and self.c_in != self.c_out

    @property
    def params(self) -> int:
        """Trainable parameters: weights, then the bias or the norm's scale and shift, PReLU's slopes, the skip's 1x1
        convolution."""
        weights = self.c_in * self.c_out * (self.kernel**2 if self.kind != "linear" else 1)
        n = weights + (self.c_out if self.bias else 2 * self.c_out)
        n += self.c_out if self.activation == "prelu" else 0
        return n + (self.c_in * self.c_out if self.projects_skip else 0)

    @property
    def outputs(self) -> int:
        """Elements per image of what the layer outputs."""
        return self.c_out * self.side**2


@dataclass(frozen=True)
class LayerPlan:
    noise: tuple[int, int, int]  # G's input, C x H x W
    image: tuple[int, int, int]  # G's output and D's input, C x H x W
    g: tuple[Layer, ...]
    d: tuple[Layer, ...]
    init: str = "default"  # default (PyTorch's) | normal: weights from N(0, 0.02), norm scales from N(1, 0.02)
    spectral_norm: str = "none"  # none | d | both: whose conv and linear weights are divided by their spectral norm

    def __post_init__(self) -> None:
        # What model.py relies on to chain the layers; every space's plan must hold it.
        for net, layers, (c, h, w) in (("G", self.g, self.noise), ("D", self.d, self.image)):
            first = layers[0]
            if first.c_in != (c * h * w if first.kind == "linear" else c) or first.kind != "linear" and first.side_in != h:
                raise ValueError(f"{net}: {first.name} does not take a {c} x {h} x {w} input")
            kinds = [layer.kind == "linear" for layer in layers]
            if net == "G" and kinds != sorted(kinds, reverse=True) or net == "D" and kinds != sorted(kinds):
                raise ValueError(f"{net}'s linear layers must come {'first' if net == 'G' else 'last'}: {layers}")
            for a, b in zip(layers, layers[1:]):
                chained = a.c_out * a.side**2 if b.kind == "linear" and a.kind != "linear" else a.c_out
                side_in = 1 if a.kind == "linear" else a.side
                if chained != b.c_in or b.kind != "linear" and side_in != b.side_in:
                    raise ValueError(f"{net}: {a.name} does not feed {b.name}")
        if self.g[-1].c_out != self.image[0] or self.g[-1].side != self.image[1]:
            raise ValueError(f"G ends at {self.g[-1].c_out} x {self.g[-1].side}px, not the image {self.image}")
        if self.d[-1].kind != "linear" or self.d[-1].c_out != 1:
            raise ValueError("D must end in a linear score")

    @property
    def output_range(self) -> tuple[float, float]:
        """G's output range, to which real images are scaled: tanh's [-1, 1] or sigmoid's [0, 1]."""
        return (0.0, 1.0) if self.g[-1].activation == "sigmoid" else (-1.0, 1.0)

    @property
    def d_probability(self) -> bool:
        """D ends in a sigmoid and outputs a probability (seed-v1), rather than a score (logit or critic value)."""
        return self.d[-1].activation == "sigmoid"

    @property
    def d_features(self) -> int:
        """D's flattened features, the input of its linear layers: what feature matching compares."""
        return next(layer.c_in for layer in self.d if layer.kind == "linear")

    @property
    def param_counts(self) -> tuple[int, int]:
        return sum(layer.params for layer in self.g), sum(layer.params for layer in self.d)
