"""Sampling stays inside the space, builds exactly the network it describes, and is reproducible."""

import numpy as np
import pytest
import torch

from neuroevo import config
from neuroevo.space import registry, seed_v1
from neuroevo.space.seed_v1 import SeedV1Chromosome as Chromosome
from neuroevo.train.model import build, count_params, noise
from tests.conftest import tiny_config


def _samples(cfg: config.RunConfig, n: int, seed: int = 0) -> list[tuple[Chromosome, int]]:
    rng = np.random.default_rng(seed)
    return [registry.sample(cfg.space, cfg.data.image_size, cfg.data.channels, rng) for _ in range(n)]


def _assert_in_space(ch: Chromosome, cfg: config.RunConfig) -> None:
    s, size = cfg.space, cfg.data.image_size
    lo, hi = seed_v1.noise_sides(s, size)
    assert s.noise_channels[0] <= ch.noise_channels <= s.noise_channels[1]
    assert lo <= ch.noise_side <= hi
    assert s.g_blocks[0] <= len(ch.g_blocks) <= s.g_blocks[1]
    assert s.d_blocks[0] <= len(ch.d_blocks) <= s.d_blocks[1]
    for b in ch.g_blocks + ch.d_blocks:
        assert s.channels[0] <= b.channels <= s.channels[1]
        assert s.kernel[0] <= b.kernel <= s.kernel[1]
        assert s.bn_momentum[0] <= b.bn_momentum <= s.bn_momentum[1]
    assert s.kernel[0] <= ch.g_out_kernel <= s.kernel[1]
    # G grows the noise exactly to the image: sum of (k - 1) over its stride-1 layers
    assert ch.noise_side + sum(b.kernel - 1 for b in ch.g_blocks) + ch.g_out_kernel - 1 == size
    assert ch.d_feature_side >= 1
    assert s.d_hidden[0] <= ch.d_hidden <= s.d_hidden[1]
    for lr in (ch.g_lr, ch.d_lr):
        assert s.lr[0] <= lr <= s.lr[1]
    for m in (ch.g_momentum, ch.d_momentum):
        assert s.momentum[0] <= m <= s.momentum[1]
    assert ch.batch_size == s.batch_size
    assert sum(registry.param_counts(ch)) <= s.max_params


@pytest.mark.parametrize("preset", ["cifar10", "imagenet", "demo"])
def test_1000_samples_stay_in_the_reference_space(preset):
    cfg = config.load(preset)
    samples = _samples(cfg, 1000)
    for ch, _ in samples:
        _assert_in_space(ch, cfg)
    # every noise side of the range is reachable, and the sampler really varies the genes
    sides = {ch.noise_side for ch, _ in samples}
    lo, hi = seed_v1.noise_sides(cfg.space, cfg.data.image_size)
    assert sides == set(range(lo, hi + 1))
    assert len({ch.id for ch, _ in samples}) == 1000
    assert {ch.noise_channels for ch, _ in samples} == set(range(2, 6))


def test_reference_noise_sides():
    assert seed_v1.noise_sides(config.load("cifar10").space, 64) == (16, 48)
    assert seed_v1.noise_sides(config.load("imagenet").space, 200) == (50, 150)


@pytest.mark.parametrize("preset", ["cifar10", "imagenet"])
def test_reference_sized_models_have_the_counted_params_and_shapes(preset):
    """Built on the meta device: real shapes and parameter counts, no memory or compute (and no autograd, BatchNorm
    in eval mode: on meta, training mode's batch statistics are a long Python decomposition)."""
    cfg = config.load(preset)
    for ch, _ in _samples(cfg, 25, seed=1):
        with torch.device("meta"), torch.no_grad():
            G, D = (m.eval() for m in build(ch))
            fake = G(noise(ch, 2, device="meta"))
            _, out = D(fake)
        assert fake.shape == (2, 3, cfg.data.image_size, cfg.data.image_size)
        assert out.shape == (2,)
        assert (count_params(G), count_params(D)) == registry.param_counts(ch)


def test_small_models_output_image_shape_and_probabilities():
    cfg = config.load("demo")
    torch.manual_seed(0)
    for ch, _ in _samples(cfg, 200, seed=2):
        G, D = build(ch)
        G.eval(), D.eval()
        with torch.no_grad():
            fake = G(noise(ch, 4))
            _, p = D(fake)
        assert fake.shape == (4, 3, 16, 16)
        assert fake.abs().max() <= 1.0  # tanh output
        assert ((p > 0) & (p < 1)).all()
        assert (count_params(G), count_params(D)) == registry.param_counts(ch)


def test_blocks_are_convtranspose_bn_prelu_and_conv_bn_prelu_fc_fc_sigmoid():
    ch, _ = _samples(config.load("demo"), 1)[0]
    G, D = build(ch)
    leaves = [m for m in (*G.modules(), *D.modules()) if not list(m.children())]
    types = [type(m).__name__ for m in leaves if not isinstance(m, (torch.nn.Identity, torch.nn.Sequential))]
    assert types == (["ConvTranspose2d", "BatchNorm2d", "PReLU"] * len(ch.g_blocks) + ["ConvTranspose2d", "Tanh"]
                     + ["Conv2d", "BatchNorm2d", "PReLU"] * len(ch.d_blocks) + ["Linear", "PReLU", "Linear", "Sigmoid"])
    for m in leaves:
        if isinstance(m, torch.nn.PReLU):
            assert m.weight.numel() > 1 and torch.all(m.weight == 0.25)  # per channel, initialised at 0.25
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            assert m.stride == (1, 1) and m.padding == (0, 0)
    bns = [m for m in leaves if isinstance(m, torch.nn.BatchNorm2d)]
    assert [bn.momentum for bn in bns] == [b.bn_momentum for b in ch.g_blocks + ch.d_blocks]
    assert all(bn.affine for bn in bns)


def test_json_round_trip_is_exact_and_id_is_stable():
    for ch, _ in _samples(config.load("cifar10"), 100, seed=3):
        back = seed_v1.from_json(ch.to_json())
        assert back == ch
        assert back.id == ch.id
        assert back.to_json() == ch.to_json()
    ch = _samples(config.load("demo"), 1, seed=4)[0][0]
    assert ch.id == seed_v1.from_json(ch.to_json()).id and len(ch.id) == 12


def test_same_seed_same_chromosomes_other_seed_others():
    cfg = config.load("cifar10")
    a = [ch.id for ch, _ in _samples(cfg, 20, seed=7)]
    b = [ch.id for ch, _ in _samples(cfg, 20, seed=7)]
    c = [ch.id for ch, _ in _samples(cfg, 20, seed=8)]
    assert a == b
    assert not set(a) & set(c)


def test_learning_rates_are_log_uniform():
    lrs = np.array([ch.g_lr for ch, _ in _samples(config.load("cifar10"), 1000, seed=5)])
    # log-uniform on [1e-5, 1e-4]: half the mass below sqrt(1e-5 * 1e-4) ~ 3.16e-5 (uniform would put 24% there)
    assert 0.44 < np.mean(lrs < 10**-4.5) < 0.56


def test_max_params_rejects_and_counts():
    cfg = tiny_config(space={"max_params": 8000})
    samples = _samples(cfg, 50, seed=6)
    assert all(sum(registry.param_counts(ch)) <= 8000 for ch, _ in samples)
    assert sum(rejected for _, rejected in samples) > 0


def test_an_impossible_max_params_is_a_clear_error():
    cfg = tiny_config(space={"max_params": 10})
    with pytest.raises(registry.SpaceTooTight, match="space.max_params"):
        registry.sample(cfg.space, 12, 3, np.random.default_rng(0), max_tries=200)
