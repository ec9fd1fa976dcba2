"""How much a chromosome's training costs, in FLOPs, from its layer plan alone.

Pure functions of the layer plan, no torch: the driver orders a population before any task starts. The cost is the
FLOPs of one training (multiply-adds count 2, as torch.utils.flop_counter counts them): what the convolutions and FC
layers of G and D do in the DCGAN step, forward and backward, times the batches of every epoch.
"""

from __future__ import annotations

from neuroevo.config import TrainConfig
from neuroevo.space import registry
from neuroevo.space.chromosome import Chromosome
from neuroevo.space.layer_plan import Layer


def flops(layer: Layer) -> int:
    """Forward FLOPs per image of one layer: its convolution or matrix product, and the 1x1 convolution of a skip
    that changes the channel count. Norms, activations and pooling are left out (a few FLOPs per element)."""
    if layer.kind == "linear":
        return 2 * layer.c_in * layer.c_out
    # a convolution works per output pixel, a transposed one per input pixel
    pixels = layer.side_in**2 if layer.kind == "conv_transpose" else layer.side_out**2
    n = 2 * layer.c_in * layer.c_out * layer.kernel**2 * pixels
    return n + (2 * layer.c_in * layer.c_out * layer.side_out**2 if layer.projects_skip else 0)


def layer_flops(ch: Chromosome) -> tuple[list[int], list[int]]:
    """Forward FLOPs per image of each layer of G and of D, input layer first."""
    plan = registry.plan(ch)
    return [flops(layer) for layer in plan.g], [flops(layer) for layer in plan.d]


def step_flops(ch: Chromosome) -> int:
    """FLOPs of one DCGAN step per image in the batch.

    A layer's backward costs its forward once for the weight gradient and once more for the input gradient,
    except for an input layer whose input needs no gradient (real images, noise). The step is:
    G(z); D(real) and D(G(z).detach()), forward and backward; D(G(z)) forward and backward through D into G.
    D's weight gradients are computed in G's step too (D's parameters require grad).
    """
    g, d = layer_flops(ch)
    fg, fd = sum(g), sum(d)
    d_pass = fd + fd + (fd - d[0])  # forward, weight grads, input grads past the first layer
    g_pass = fd + fd + fd + fg + (fg - g[0])  # D(fake) forward and backward, then G's backward
    return fg + 2 * d_pass + g_pass


def images_per_epoch(ch: Chromosome, cfg: TrainConfig, n_images: int | None) -> int:
    """Images trained on per epoch: whole batches only, at most cfg.steps_per_epoch of them.
    n_images None: a dataset larger than any cap (the same for every chromosome of a run)."""
    steps = n_images // ch.batch_size if n_images is not None else None
    if cfg.steps_per_epoch is not None:
        steps = cfg.steps_per_epoch if steps is None else min(steps, cfg.steps_per_epoch)
    return ch.batch_size * (steps if steps is not None else 1)


def cost(ch: Chromosome, cfg: TrainConfig, n_images: int | None = None) -> float:
    """FLOPs of the whole training: per image x images per epoch x epochs."""
    return float(step_flops(ch)) * images_per_epoch(ch, cfg, n_images) * cfg.epochs
