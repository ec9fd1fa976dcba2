"""Variation: children of chosen chromosomes. Pure functions of (parents, space, random generator); no torch.

A child is valid by construction, as a sampled chromosome is. Mutation may move where G doubles or D halves its
side, never how many times, so G still ends at the image side and D's flattened features keep their bound; a block
it adds keeps the side (stride 1, no pooling); D's last block never gets more channels than that bound allows.
Crossover swaps whole gene groups whose validity does not depend on the others' (G's layer stack stays together,
as does D's). Neither checks max_params: selection.breed does.

A move is a closure, built for every change the chromosome allows; mutate() runs one of them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from neuroevo.config import SpaceConfig, SpaceV2, generator_depths
from neuroevo.genome import (Block, Chromosome, ChromosomeV2, Genome, growth_kernels, int_in, pick, sample_block,
                             conv_kernels, d_halvings, dense_norms, max_last_channels, sample_conv, sample_dense,
                             sample_label_smoothing, sample_optimiser)

Move = Callable[[], Genome]
LR_FACTOR = 2.0  # a learning-rate perturbation multiplies by a log-uniform factor in [1/2, 2]


def _other(rng: np.random.Generator, options, current) -> list:
    """A value among `options` other than `current` (as a one-element list), or [] when there is none."""
    rest = [o for o in options if o != current]
    return [pick(rng, rest)] if rest else []


def _replace_at(items: tuple, i: int, item) -> tuple:
    return items[:i] + (item,) + items[i + 1:]


def _insert_at(items: tuple, i: int, item) -> tuple:
    return items[:i] + (item,) + items[i:]


def _remove_at(items: tuple, i: int) -> tuple:
    return items[:i] + items[i + 1:]


def _perturb(rng: np.random.Generator, lr: float, lo: float, hi: float) -> float:
    return float(min(max(lr * math.exp(rng.uniform(-math.log(LR_FACTOR), math.log(LR_FACTOR))), lo), hi))


def mutate(ch: Genome, space: SpaceConfig | SpaceV2, rng: np.random.Generator) -> Genome:
    """One change, its kind drawn uniformly among those possible: a gene redrawn from the space (always to another
    value; a move of a stride 2 or a pooling counts as one), a block or FC layer added or removed, or both learning
    rates perturbed (x [1/2, 2], kept in their range)."""
    moves = _v2_moves(ch, space, rng) if isinstance(ch, ChromosomeV2) else _v1_moves(ch, space, rng)
    kinds = [k for k in ("gene", "add", "remove", "lr") if moves[k]]
    options = moves[pick(rng, kinds)]
    return pick(rng, options)()


# --- seed-v1 ------------------------------------------------------------------------------------------------


def _v1_moves(ch: Chromosome, s: SpaceConfig, rng: np.random.Generator) -> dict[str, list[Move]]:
    rep = dataclasses.replace
    kmin, kmax = s.kernel
    grow = ch.image_size - ch.noise_side
    moves: dict[str, list[Move]] = {"gene": [], "add": [], "remove": [], "lr": []}
    gene = moves["gene"]
    for v in _other(rng, range(s.noise_channels[0], s.noise_channels[1] + 1), ch.noise_channels):
        gene.append(lambda v=v: rep(ch, noise_channels=v))
    for v in _other(rng, range(s.d_hidden[0], s.d_hidden[1] + 1), ch.d_hidden):
        gene.append(lambda v=v: rep(ch, d_hidden=v))
    for net in ("g_blocks", "d_blocks"):
        blocks = getattr(ch, net)
        for i, b in enumerate(blocks):
            for v in _other(rng, range(s.channels[0], s.channels[1] + 1), b.channels):
                gene.append(lambda net=net, blocks=blocks, i=i, b=b, v=v:
                            rep(ch, **{net: _replace_at(blocks, i, rep(b, channels=v))}))
            gene.append(lambda net=net, blocks=blocks, i=i, b=b:
                        rep(ch, **{net: _replace_at(blocks, i, rep(b, bn_momentum=float(rng.uniform(*s.bn_momentum))))}))
    for i, b in enumerate(ch.d_blocks):  # D's kernels may grow only while its last feature map keeps a side >= 1
        for v in _other(rng, range(kmin, min(kmax, b.kernel + ch.d_feature_side - 1) + 1), b.kernel):
            gene.append(lambda i=i, b=b, v=v: rep(ch, d_blocks=_replace_at(ch.d_blocks, i, rep(b, kernel=v))))
    gene.append(lambda: _v1_regrow(ch, ch.g_blocks, s, rng))  # G's kernels, redrawn to the same total growth
    gene.append(lambda: rep(ch, g_momentum=float(rng.uniform(*s.momentum))))
    gene.append(lambda: rep(ch, d_momentum=float(rng.uniform(*s.momentum))))

    n_g, n_d = len(ch.g_blocks), len(ch.d_blocks)
    depths = generator_depths(s, grow)
    if n_g + 1 in depths:
        i = int_in(rng, (0, n_g))
        moves["add"].append(lambda i=i: _v1_regrow(ch, _insert_at(ch.g_blocks, i, sample_block(rng, s, kmin)), s, rng))
    if n_g - 1 in depths:
        i = int_in(rng, (0, n_g - 1))
        moves["remove"].append(lambda i=i: _v1_regrow(ch, _remove_at(ch.g_blocks, i), s, rng))
    if n_d < s.d_blocks[1] and ch.d_feature_side >= kmin:
        i, k = int_in(rng, (0, n_d)), int_in(rng, (kmin, min(kmax, ch.d_feature_side)))
        moves["add"].append(lambda i=i, k=k: rep(ch, d_blocks=_insert_at(ch.d_blocks, i, sample_block(rng, s, k))))
    if n_d > s.d_blocks[0]:
        i = int_in(rng, (0, n_d - 1))
        moves["remove"].append(lambda i=i: rep(ch, d_blocks=_remove_at(ch.d_blocks, i)))
    moves["lr"].append(lambda: rep(ch, g_lr=_perturb(rng, ch.g_lr, *s.lr), d_lr=_perturb(rng, ch.d_lr, *s.lr)))
    return moves


def _v1_regrow(ch: Chromosome, blocks: tuple[Block, ...], s: SpaceConfig, rng: np.random.Generator) -> Chromosome:
    """G's blocks with kernels redrawn so that they and the output layer grow the noise exactly to the image."""
    kernels = growth_kernels(rng, len(blocks) + 1, ch.image_size - ch.noise_side, *s.kernel)
    return dataclasses.replace(ch, g_blocks=tuple(dataclasses.replace(b, kernel=k) for b, k in zip(blocks, kernels)),
                               g_out_kernel=kernels[-1])


# --- v2 -----------------------------------------------------------------------------------------------------


def _v2_moves(ch: ChromosomeV2, s: SpaceV2, rng: np.random.Generator) -> dict[str, list[Move]]:
    rep = dataclasses.replace
    moves: dict[str, list[Move]] = {"gene": [], "add": [], "remove": [], "lr": []}
    gene = moves["gene"]
    size, last_cap = ch.image_size, max_last_channels(s, ch.image_size, d_halvings(ch))

    def field(name: str, options, current=None) -> None:
        for v in _other(rng, options, getattr(ch, name) if current is None else current):
            gene.append(lambda v=v: rep(ch, **{name: v}))

    def layer(name: str, i: int | None, layer_, changes: dict) -> None:
        """Moves that redraw one gene of a layer (of the tuple `name` at i, or of the single layer `name`)."""
        for key, options in changes.items():
            for v in _other(rng, options, getattr(layer_, key)):
                new = rep(layer_, **{key: v})
                gene.append(lambda new=new: rep(ch, **{name: new if i is None else _replace_at(getattr(ch, name), i, new)}))

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
    for loss in _other(rng, s.losses, ch.loss):
        gene.append(lambda loss=loss: rep(ch, loss=loss, label_smoothing=sample_label_smoothing(rng, s, loss)))
    if ch.loss == "bce":
        field("label_smoothing", s.label_smoothing)
    field("feature_matching", s.feature_matching)
    field("init", s.inits)
    field("separate_batches", s.separate_batches)
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
        moves["add"].append(lambda i=i: rep(ch, g_blocks=_insert_at(ch.g_blocks, i, sample_conv(rng, s, 1, s.g_activations))))
    keeps_side = [i for i, b in enumerate(ch.g_blocks) if b.stride == 1]
    if keeps_side and len(ch.g_blocks) > s.g_blocks[0]:
        i = pick(rng, keeps_side)
        moves["remove"].append(lambda i=i: rep(ch, g_blocks=_remove_at(ch.g_blocks, i)))
    n_d = len(ch.d_blocks)
    if 1 in s.strides and "none" in s.pools and n_d < s.d_blocks[1]:
        i = int_in(rng, (0, n_d))
        cap = last_cap if i == n_d else None  # a new last block must fit the flatten bound
        if (cap is None or cap >= s.channels[0]) and (n_d or s.channels[0] * size**2 <= s.max_flatten):
            moves["add"].append(lambda i=i, cap=cap: rep(ch, d_blocks=_insert_at(
                ch.d_blocks, i, sample_conv(rng, s, 1, s.d_activations, max_channels=cap))))
    keeps_side = [i for i, b in enumerate(ch.d_blocks) if b.stride == 1 and b.pool == "none"
                  and (i < n_d - 1 or last_cap >= s.channels[0])]  # a new last block must fit the flatten bound
    if keeps_side and n_d > s.d_blocks[0] and (n_d > 1 or ch.image_channels * size**2 <= s.max_flatten):
        i = pick(rng, keeps_side)
        moves["remove"].append(lambda i=i: _v2_remove_d(ch, i, last_cap))
    for name, acts, (lo, hi) in (("g_fc", s.g_activations, s.g_fc), ("d_fc", s.d_activations, s.d_fc)):
        fc = getattr(ch, name)
        if len(fc) < hi:
            i = int_in(rng, (0, len(fc)))
            moves["add"].append(lambda name=name, fc=fc, i=i, acts=acts:
                                rep(ch, **{name: _insert_at(fc, i, sample_dense(rng, s, acts))}))
        if len(fc) > lo:
            i = int_in(rng, (0, len(fc) - 1))
            moves["remove"].append(lambda name=name, fc=fc, i=i: rep(ch, **{name: _remove_at(fc, i)}))

    def perturbed(opt):
        lo, hi = s.sgd_lr if opt.name == "sgd" else s.adam_lr
        return rep(opt, lr=_perturb(rng, opt.lr, lo, hi))

    moves["lr"].append(lambda: rep(ch, g_opt=perturbed(ch.g_opt), d_opt=perturbed(ch.d_opt)))
    return moves


def _move(ch: ChromosomeV2, in_g: bool, key: str, src: int, dst: int, s: SpaceV2, rng: np.random.Generator) -> ChromosomeV2:
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


def _v2_remove_d(ch: ChromosomeV2, i: int, last_cap: int) -> ChromosomeV2:
    """D without its block i; a block that becomes the last keeps within the flatten bound."""
    blocks = _remove_at(ch.d_blocks, i)
    if blocks and i == len(blocks):
        blocks = _replace_at(blocks, i - 1, dataclasses.replace(blocks[-1], channels=min(blocks[-1].channels, last_cap)))
    return dataclasses.replace(ch, d_blocks=blocks)


# --- crossover ----------------------------------------------------------------------------------------------

# Gene groups: each is valid with any other group of its space. G's layers and the noise side that they grow
# (seed-v1), and G's projection, blocks and output layer (v2), must stay together to reach the image side.
GROUPS = {
    "seed-v1": {
        "g": (("noise_side", "g_blocks", "g_out_kernel"), ("noise_channels",), ("g_lr",), ("g_momentum",)),
        "d": (("d_blocks",), ("d_hidden",), ("d_lr",), ("d_momentum",)),
        "training": (),
    },
    "v2": {
        "g": (("noise_dim",), ("g_fc",), ("g_project", "g_blocks", "g_out"), ("g_opt",)),
        "d": (("d_blocks",), ("d_fc",), ("d_opt",)),
        "training": (("loss", "label_smoothing"), ("feature_matching",), ("init",), ("separate_batches",)),
    },
}


def crossover(a: Genome, b: Genome, rng: np.random.Generator) -> Genome:
    """Half the time G of one parent with D of the other (the training genes of either, as a whole); otherwise
    gene-wise: each gene group from either parent."""
    groups = GROUPS[a.space]
    if rng.random() < 0.5:
        g_parent, d_parent = (a, b) if rng.random() < 0.5 else (b, a)
        child = dataclasses.replace(g_parent, **{f: getattr(d_parent, f) for group in groups["d"] for f in group})
        training = a if rng.random() < 0.5 else b
        return dataclasses.replace(child, **{f: getattr(training, f) for group in groups["training"] for f in group})
    taken = [group for part in groups.values() for group in part if rng.random() < 0.5]
    return dataclasses.replace(a, **{f: getattr(b, f) for group in taken for f in group})
