"""How long a chromosome will train, from its genes alone, and the order in which tasks are dispatched.

Pure functions, no torch: the driver orders a population before any task starts. The cost is the FLOPs of
one training (multiply-adds count 2, as torch.utils.flop_counter counts them): what the convolutions and FC
layers of G and D do in the DCGAN step, forward and backward, times the batches of every epoch.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

from neuroevo.config import TrainConfig
from neuroevo.genome import ChromosomeV2, Genome, layer_side

T = TypeVar("T")

DISPATCH = ("longest_first", "fifo")


def layer_flops(ch: Genome) -> tuple[list[int], list[int]]:
    """Forward FLOPs per image of each conv/FC layer of G and of D, input layer first."""
    if isinstance(ch, ChromosomeV2):
        return _layer_flops_v2(ch)
    g, c, side = [], ch.noise_channels, ch.noise_side
    for b in ch.g_blocks:  # a transposed conv works per input pixel: c_in x c_out x k^2 per pixel
        g.append(2 * c * b.channels * b.kernel**2 * side**2)
        c, side = b.channels, side + b.kernel - 1
    g.append(2 * c * ch.image_channels * ch.g_out_kernel**2 * side**2)

    d, c, side = [], ch.image_channels, ch.image_size
    for b in ch.d_blocks:  # a conv works per output pixel
        side -= b.kernel - 1
        d.append(2 * c * b.channels * b.kernel**2 * side**2)
        c = b.channels
    d.append(2 * c * side**2 * ch.d_hidden)
    d.append(2 * ch.d_hidden)
    return g, d


def _layer_flops_v2(ch: ChromosomeV2) -> tuple[list[int], list[int]]:
    """The same for a v2 chromosome: FC layers, convolutions and the 1x1 convolutions of skips that change the
    channel count. Norms, activations and pooling are left out (a few FLOPs per element, as in seed-v1)."""
    g, n = [], ch.noise_dim
    for dense in ch.g_fc:
        g.append(2 * n * dense.units)
        n = dense.units
    c, side = ch.g_project.channels, ch.g_project.kernel  # the projection: a transposed conv of the 1 x 1 noise
    g.append(2 * n * c * side**2)
    for layer in (*ch.g_blocks, ch.g_out):
        out = layer_side(side, layer, transposed=True)
        g.append(2 * c * layer.channels * layer.kernel**2 * side**2)  # per input pixel
        if layer.skip and c != layer.channels:
            g.append(2 * c * layer.channels * out**2)
        c, side = layer.channels, out

    d, c, side = [], ch.image_channels, ch.image_size
    for layer in ch.d_blocks:
        p = (layer.kernel - 1) // 2
        conv_side = (side + 2 * p - layer.kernel) // layer.stride + 1
        d.append(2 * c * layer.channels * layer.kernel**2 * conv_side**2)  # per output pixel
        if layer.skip and c != layer.channels:
            d.append(2 * c * layer.channels * conv_side**2)
        c, side = layer.channels, layer_side(side, layer, transposed=False)
    n = c * side**2
    for dense in ch.d_fc:
        d.append(2 * n * dense.units)
        n = dense.units
    d.append(2 * n)  # the score
    return g, d


def step_flops(ch: Genome) -> int:
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


def images_per_epoch(ch: Genome, cfg: TrainConfig, n_images: int | None) -> int:
    """Images trained on per epoch: whole batches only, at most cfg.steps_per_epoch of them.
    n_images None: a dataset larger than any cap (the same for every chromosome of a run)."""
    steps = n_images // ch.batch_size if n_images is not None else None
    if cfg.steps_per_epoch is not None:
        steps = cfg.steps_per_epoch if steps is None else min(steps, cfg.steps_per_epoch)
    return ch.batch_size * (steps if steps is not None else 1)


def cost(ch: Genome, cfg: TrainConfig, n_images: int | None = None) -> float:
    """FLOPs of the whole training: per image x images per epoch x epochs."""
    return float(step_flops(ch)) * images_per_epoch(ch, cfg, n_images) * cfg.epochs


def dispatch_order(items: Sequence[T], costs: Sequence[float], ids: Sequence[str], how: str) -> list[T]:
    """longest_first: highest cost first, ties by id; fifo: as given."""
    if how == "fifo":
        return list(items)
    if how != "longest_first":
        raise ValueError(f"dispatch must be one of {DISPATCH}, got {how!r}")
    order = sorted(range(len(items)), key=lambda i: (-costs[i], ids[i]))
    return [items[i] for i in order]

