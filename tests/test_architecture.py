"""The layer plan is the networks: every quantity read off it equals the built model's, in every space."""

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from neuroevo import config
from neuroevo.space import registry, v2
from neuroevo.space.chromosome import Chromosome
from neuroevo.space.layer_plan import Layer, LayerPlan
from neuroevo.store import logs
from neuroevo.train import flops, memory
from neuroevo.train.model import build, noise
from tests.conftest import saved_activation_floats, v2_config

# Each space at the size its presets use (built on the meta device: shapes and counts, no memory or compute), and
# the tests' tiny spaces (built for real).
SPACES = {
    "seed-v1 demo": (lambda: config.load("demo"), "cpu"),
    "seed-v1 cifar10": (lambda: config.load("cifar10"), "meta"),
    "v2 preset": (lambda: config.load("v2"), "meta"),
    "v2 tiny": (v2_config, "cpu"),
}


def chromosomes(name: str, n: int = 200) -> tuple[list[Chromosome], str]:
    make, device = SPACES[name]
    cfg = make()
    rng = np.random.default_rng(11)
    return [registry.sample(cfg.space, cfg.data.image_size, cfg.data.channels, rng)[0] for _ in range(n)], device


def modules_by_layer(G, D) -> tuple[list[torch.nn.Module], list[torch.nn.Module]]:
    """The modules model.py built for each layer of the plan, in the plan's order."""
    return [*G.fc, *G.convs], [*D.convs, *D.fc]


def check_against_model(ch: Chromosome, device: str) -> None:
    plan = registry.plan(ch)
    with torch.device(device):
        G, D = build(ch)
    g_modules, d_modules = modules_by_layer(G, D)
    assert len(g_modules) == len(plan.g) and len(d_modules) == len(plan.d)
    shapes = {}
    for m in (*g_modules, *d_modules):
        m.register_forward_hook(lambda m, i, out: shapes.__setitem__(m, tuple(out.shape[1:])))
    # Shapes, parameters and FLOPs depend on neither autograd nor BatchNorm's mode; on the meta device, training
    # mode's batch statistics are a long Python decomposition, so the forward pass runs in eval mode, no grad.
    G.eval(), D.eval()
    with torch.no_grad():
        with FlopCounterMode(display=False) as g_count:
            fake = G(noise(ch, 2, device=device))
        with FlopCounterMode(display=False) as d_count:
            features, score = D(fake)
    for layer, m in (*zip(plan.g, g_modules), *zip(plan.d, d_modules)):
        expected = (layer.c_out,) if layer.kind == "linear" else (layer.c_out, layer.side, layer.side)
        assert shapes[m] == expected, (layer, shapes[m])
        assert sum(p.numel() for p in m.parameters()) == layer.params, layer
    assert fake.shape[1:] == plan.image and score.shape == (2,) and features.shape == (2, plan.d_features)
    g_flops, d_flops = flops.layer_flops(ch)
    assert g_count.get_total_flops() == 2 * sum(g_flops)
    assert d_count.get_total_flops() == 2 * sum(d_flops)
    assert registry.param_counts(ch) == (sum(p.numel() for p in G.parameters()), sum(p.numel() for p in D.parameters()))


@pytest.mark.parametrize("space", list(SPACES))
def test_every_quantity_of_the_plan_is_the_built_models(space):
    chs, device = chromosomes(space)
    for ch in chs:
        check_against_model(ch, device)


@pytest.mark.parametrize("size", [12, 32, 64])
def test_the_dcgan_seed_plan_is_the_built_models(size):
    check_against_model(v2.dcgan(size, 3), "meta")


@pytest.mark.parametrize("space", list(SPACES))
def test_log_columns_read_the_plan(space):
    for ch in chromosomes(space, 20)[0]:
        plan, row = registry.plan(ch), logs.gene_columns(ch)
        convs = [layer for layer in plan.g if layer.kind != "linear"]
        assert row["g_kernels"] == [layer.kernel for layer in convs] and row["g_n_blocks"] == len(convs) - 1
        assert (row["noise_channels"], row["noise_side"]) == ch.noise_shape[:2]
        assert row["d_n_blocks"] == len(row["d_channels"]) == sum(layer.kind != "linear" for layer in plan.d)


def test_seed_v1_columns_are_its_genes():
    ch = chromosomes("seed-v1 demo", 1)[0][0]
    row = logs.gene_columns(ch)
    assert row["g_channels"] == [b.channels for b in ch.g_blocks] and row["d_hidden"] == ch.d_hidden
    assert row["g_kernels"] == [b.kernel for b in ch.g_blocks] + [ch.g_out_kernel]
    assert row["d_kernels"] == [b.kernel for b in ch.d_blocks] and row["noise_side"] == ch.noise_side


def test_a_plan_whose_layers_do_not_chain_is_refused():
    g = (Layer("output", "conv_transpose", 4, 3, 2, 4, 3),)
    d = (Layer("score", "linear", 48, 1),)
    LayerPlan((4, 2, 2), (3, 4, 4), g, d)  # chains
    with pytest.raises(ValueError, match="does not take"):
        LayerPlan((5, 2, 2), (3, 4, 4), g, d)
    with pytest.raises(ValueError, match="G ends at"):
        LayerPlan((4, 2, 2), (3, 5, 5), g, (Layer("score", "linear", 75, 1),))
    with pytest.raises(ValueError, match="does not feed"):
        LayerPlan((4, 2, 2), (3, 4, 4), g, (Layer("block 1", "conv", 3, 2, 4, 4, 1), Layer("score", "linear", 48, 1)))


@pytest.mark.parametrize("space", [name for name, (_, device) in SPACES.items() if device == "cpu"] + ["dcgan"])
def test_activation_estimate_of_every_space_is_what_autograd_keeps(space):
    """Measured on real tensors, so on the small spaces (every layer kind is on offer there) and a small DCGAN."""
    chs = [v2.dcgan(16, 3, width=8)] if space == "dcgan" else chromosomes(space, 60)[0]
    for ch in chs:
        ch = dataclasses.replace(ch, batch_size=2)  # the count is linear in the batch
        measured = saved_activation_floats(ch)
        assert measured <= memory.activation_elements(ch) <= 1.05 * measured, ch
