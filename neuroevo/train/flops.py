"""How much a chromosome's training costs, in FLOPs, from its layer plan alone.

Pure functions of the layer plan, no torch: the driver orders a population before any task starts. The cost is the
FLOPs of one training (multiply-adds count 2, as torch.utils.flop_counter counts them): what the convolutions and FC
layers of G and D do in a D step and in a G step, forward and backward, times the steps. The same functions turn the
steps a training took into the FLOPs it logs (train_flops).
"""

from __future__ import annotations

from neuroevo.config import TrainConfig
from neuroevo.space import registry
from neuroevo.space.chromosome import Chromosome
from neuroevo.space.genes import Recipe
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


# A double backward (the gradient penalty, R1), counted in passes of D's layers: torch.utils.flop_counter counts within
# 10% of these, by D's activations and norms (whose second derivatives add terms of their own).
GP_PASSES = 6  # D's forward on the mixed images, their input gradient, the double backward and the plain backward
R1_PASSES = 3  # the real images' input gradient (D's forward on them is the loss's), and its double backward


def d_step_flops(ch: Chromosome) -> int:
    """FLOPs of one D step per image in the batch: G(z); D(real) and D(G(z).detach()), forward and backward.

    A layer's backward costs its forward once for the weight gradient and once more for the input gradient,
    except for an input layer whose input needs no gradient (real images, noise). The gradient penalty (wgan-gp)
    runs D on the mixed images forward, backward to them, and back through that backward (a double backward); so
    does R1 on the real images, whose forward the loss has already run.
    """
    g, d = layer_flops(ch)
    fg, fd = sum(g), sum(d)
    d_pass = fd + fd + (fd - d[0])  # forward, weight grads, input grads past the first layer
    n = fg + 2 * d_pass
    if ch.loss == "wgan-gp":
        n += GP_PASSES * fd
    if (ch.recipe or Recipe()).r1_gamma:
        r1 = R1_PASSES * fd + d[0]  # and the real images' own input gradient, which R1 needs
        n += r1 if ch.separate_batches else 2 * r1  # on a mixed batch the gradient runs through the fakes too
    return n


def g_step_flops(ch: Chromosome) -> int:
    """FLOPs of one G step per image in the batch: D(G(z)) forward and backward through D into G, on the fake of
    the D step before it. D's weight gradients are computed too (D's parameters require grad). Feature matching
    runs D on the real batch as well: forward only where real and fake are scored apart, forward and backward
    where they are one batch."""
    g, d = layer_flops(ch)
    fg, fd = sum(g), sum(d)
    n = fd + fd + fd + fg + (fg - g[0])  # D(fake) forward and backward, then G's backward
    if ch.feature_matching:
        n += fd if ch.separate_batches else 3 * fd
    return n


def step_flops(ch: Chromosome) -> int:
    """FLOPs of one D step and one G step per image in the batch: the DCGAN step."""
    return d_step_flops(ch) + g_step_flops(ch)


def train_flops(ch: Chromosome, d_steps: int, g_steps: int, g_images: int = 0) -> float:
    """FLOPs of a training that took `d_steps` D steps and `g_steps` G steps, and ran G forward on `g_images`
    images besides (the EMA generator's BatchNorm statistics, ema.recalibrate)."""
    forward_g = sum(layer_flops(ch)[0])
    return float(ch.batch_size * (d_steps * d_step_flops(ch) + g_steps * g_step_flops(ch)) + g_images * forward_g)


def images_per_epoch(ch: Chromosome, cfg: TrainConfig, n_images: int | None) -> int:
    """Images trained on per epoch: whole batches only, at most cfg.steps_per_epoch of them.
    n_images None: a dataset larger than any cap (the same for every chromosome of a run)."""
    steps = n_images // ch.batch_size if n_images is not None else None
    if cfg.steps_per_epoch is not None:
        steps = cfg.steps_per_epoch if steps is None else min(steps, cfg.steps_per_epoch)
    return ch.batch_size * (steps if steps is not None else 1)


def cost(ch: Chromosome, cfg: TrainConfig, n_images: int | None = None) -> float:
    """FLOPs of the whole training: a D step per batch of every epoch, a G step every n_critic of them."""
    d_steps = images_per_epoch(ch, cfg, n_images) // ch.batch_size * cfg.epochs
    return train_flops(ch, d_steps, d_steps // (ch.recipe or Recipe()).n_critic)
