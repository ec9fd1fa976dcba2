"""Search space v2: config, sampling by construction, every gene reachable, models that build, dcgan."""

import subprocess
import sys
import typing
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from neuroevo import config
from neuroevo.errors import ConfigError
from neuroevo.space import registry
from neuroevo.space.genes import Optimiser
from neuroevo.space.registry import seed_v1, v2
from neuroevo.space.v2 import Conv, V2Space
from neuroevo.train import trainer
from neuroevo.train.model import ConvBlock, build, count_params, noise
from tests.conftest import assert_valid, samples, v2_config

# ---------------------------------------------------------------------------------------------------------
# config


def test_v2_and_dcgan_presets_load_and_seed_v1_stays_the_default():
    assert config.from_dict({}).space.name == "seed-v1"
    assert config.load("demo").space.name == "seed-v1"  # a space without `name` is seed-v1, as before
    cfg = config.load("v2")
    assert isinstance(cfg.space, V2Space) and cfg.space == V2Space() and cfg.data.image_size == 64
    assert set(cfg.space.losses) == {"bce", "wgan-gp", "hinge"} and cfg.space.adam_lr == (1e-4, 4e-4)
    dcgan = config.load("dcgan")
    assert dcgan.evolve.seed_chromosomes == ("dcgan", "dcgan_sn") and dcgan.space == V2Space()


def test_yaml_narrows_and_widens_any_choice_list_or_range(tmp_path):
    cfg = config.load("v2", ["space.losses=[hinge]", "space.g_activations=[relu]", "space.d_activations=[leaky_relu]",
                             "space.channels=[8, 1024]", "space.strides=[2]", "space.label_smoothing=[false]"])
    assert cfg.space.losses == ("hinge",) and cfg.space.channels == (8, 1024) and cfg.space.strides == (2,)
    path = tmp_path / "c.yaml"
    path.write_text(config.to_yaml(cfg))
    assert config.load(str(path)) == cfg
    for ch in samples(cfg, 50):
        assert ch.loss == "hinge" and all(b.stride == 2 for b in (*ch.g_blocks, ch.g_out, *ch.d_blocks))
        assert {b.activation for b in ch.g_blocks} <= {"relu"} and {b.activation for b in ch.d_blocks} <= {"leaky_relu"}


V2_ERRORS = [
    (["space.activations=[relu]"], "space.activations: unknown key (did you mean space.g_activations?)"),
    (["space.norms=[batch, layer]"], "space.norms.1: expected 'batch', 'instance' or 'none', got 'layer'"),
    (["space.g_activations=[relu, gelu]"], "space.g_activations.1: expected 'relu', 'leaky_relu', 'prelu',"),
    (["space.losses=[]"], "space.losses: tuple should have at least 1 item after validation, not 0"),
    (["space.strides=[1, 3]"], "space.strides.1: expected 1 or 2, got 3"),
    (["space.channels=[9, 5]"], "space.channels: min 9 is greater than max 5"),
    (["space.adam_lr=[0.001, 0.0001]"], "space.adam_lr: min 0.001 is greater than max 0.0001"),
    (["space.name=v3"], "space.name: expected one of seed-v1, v2 (got 'v3')"),
    (["space.kernels=[2, 4]"], "space.kernels: stride-1 layers keep the side with padding (k-1)/2, which needs an odd kernel"),
    (["space.start_side=[5, 5]"], "space.start_side: G cannot reach 12px from a start side in [5, 5] by doubling"),
    (["space.start_side=[3, 3]", "space.strides=[1]"], "space.start_side: G cannot reach 12px"),
    (["space.max_flatten=8"], "space.max_flatten: no D of [0, 3] blocks (space.d_blocks)"),
    (["space.losses=[hinge]", "space.label_smoothing=[true]"], "space.label_smoothing: only the bce loss smooths labels"),
    (["space.decay_epoch=[1, 2]"], "space.decay_epoch: a decay after epoch 2 never happens in train.epochs=2"),
    (["evolve.strategy=crossover", "evolve.elite_fraction=0.25"], "evolve.strategy: crossover needs at least 2 elites"),
    (["evolve.strategy=tournament", "evolve.tournament_size=5"], "evolve.tournament_size: 5 is larger than the population of 4"),
    (["evolve.strategy=cloning"], "evolve.strategy: expected 'random', 'mutation', 'crossover' or 'tournament', got 'cloning'"),
    (["evolve.seed_chromosomes=[dcgan, dcgan]"], "evolve.seed_chromosomes: ['dcgan', 'dcgan'] names a chromosome twice"),
    (["evolve.seed_chromosomes=[wgan]"], "evolve.seed_chromosomes.0: expected 'dcgan' or 'dcgan_sn', got 'wgan'"),
]


@pytest.mark.parametrize("overrides, message", V2_ERRORS, ids=[" ".join(o) for o, _ in V2_ERRORS])
def test_bad_v2_spaces_are_one_line_errors_naming_the_key(tmp_path, overrides, message):
    path = tmp_path / "v2.yaml"
    path.write_text(config.to_yaml(v2_config()))
    with pytest.raises(ConfigError) as e:
        config.load(str(path), overrides)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_seed_chromosomes_need_the_v2_space():
    with pytest.raises(ConfigError, match="evolve.seed_chromosomes: dcgan is a v2 chromosome; it needs space.name: v2"):
        config.load("demo", ["evolve.seed_chromosomes=[dcgan]"])


@pytest.mark.slow
def test_bad_v2_space_through_the_cli_exits_2_before_anything_is_written(tmp_path):
    p = subprocess.run([sys.executable, "-m", "neuroevo", "run", "v2", "--set", "space.norms=[batch, layer]",
                        "--set", f"out_dir={tmp_path}/runs"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 2
    assert p.stderr.startswith("neuroevo: error: space.norms.1: expected 'batch', 'instance' or 'none', got")
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------------------
# sampling


def test_every_gene_value_is_reachable():
    cfg = v2_config()
    s = cfg.space
    chs = samples(cfg, 3000)
    g_convs = [b for ch in chs for b in ch.g_blocks]
    d_convs = [b for ch in chs for b in ch.d_blocks]
    fcs = [d for ch in chs for d in (*ch.g_fc, *ch.d_fc)]
    opts = [o for ch in chs for o in (ch.g_opt, ch.d_opt)]
    seen = {
        "noise_dim": {ch.noise_dim for ch in chs},
        "start_side": {ch.g_project.kernel for ch in chs},
        "g_blocks": {len(ch.g_blocks) for ch in chs},
        "d_blocks": {len(ch.d_blocks) for ch in chs},
        "g_fc": {len(ch.g_fc) for ch in chs},
        "d_fc": {len(ch.d_fc) for ch in chs},
        "channels": {b.channels for ch in chs for b in (ch.g_project, *ch.g_blocks, *ch.d_blocks)},
        "fc_units": {d.units for d in fcs},
        "kernels": {b.kernel for b in (*g_convs, *d_convs, *(ch.g_out for ch in chs))},
        "strides": {b.stride for b in (*g_convs, *d_convs)},
        "pools": {b.pool for b in d_convs},
        "skips": {b.skip for b in (*g_convs, *d_convs)},
        "norms": {b.norm for b in (*g_convs, *d_convs)},
        "g_activations": {b.activation for b in g_convs},
        "d_activations": {b.activation for b in d_convs},
        "outputs": {ch.g_out.activation for ch in chs},
        "losses": {ch.loss for ch in chs},
        "optimisers": {o.name for o in opts},
        "schedules": {"step" if o.decay_epoch else "none" for o in opts},
        "decay_epoch": {o.decay_epoch for o in opts if o.decay_epoch},
        "label_smoothing": {ch.label_smoothing for ch in chs if ch.loss == "bce"},
        "feature_matching": {ch.feature_matching for ch in chs},
        "inits": {ch.init for ch in chs},
        "separate_batches": {ch.separate_batches for ch in chs},
    }
    for name, values in seen.items():
        on_offer = getattr(s, name)
        if isinstance(on_offer, tuple) and len(on_offer) == 2 and name not in ("strides", "skips", "outputs",
                                                                                "schedules", "optimisers"):
            if isinstance(on_offer[0], int) and not isinstance(on_offer[0], bool):
                on_offer = range(on_offer[0], on_offer[1] + 1)  # an inclusive integer range
        if name == "start_side":  # only the sides that double to 12px: 3 and 6
            on_offer = (3, 6)
        assert values == set(on_offer), name
    # FC layers take BatchNorm or nothing (InstanceNorm needs a feature map)
    assert {d.norm for d in fcs} == {"batch", "none"} and {d.activation for d in fcs} == set(typing.get_args(v2.Activation))
    # every activation, norm and loss the code implements is on offer by default
    assert set(V2Space().g_activations) == set(typing.get_args(v2.Activation))
    assert set(V2Space().norms) == set(typing.get_args(v2.Norm)) and set(V2Space().losses) == set(typing.get_args(v2.Loss))
    # continuous genes span their ranges
    sgd = [o for o in opts if o.name == "sgd"]
    assert min(o.lr for o in sgd) < 1.2e-5 and max(o.lr for o in sgd) > 0.9e-4
    assert min(o.momentum for o in sgd) < 0.1 and max(o.momentum for o in sgd) > 0.85


def test_every_sample_is_valid_and_reproducible():
    cfg = v2_config()
    chs = samples(cfg, 1000, seed=3)
    for ch in chs:
        assert_valid(ch, cfg.space)
    assert [ch.id for ch in chs[:20]] == [ch.id for ch in samples(cfg, 20, seed=3)]
    assert len({ch.id for ch in chs}) == 1000


def test_1000_random_v2_chromosomes_build_and_step_forward_and_backward():
    cfg = v2_config()
    torch.manual_seed(0)
    for ch in samples(cfg, 1000, seed=1):
        G, D = build(ch)
        fake = G(noise(ch, 4))
        assert fake.shape == (4, 3, 12, 12)
        features, score = D(fake)
        assert features.shape == (4, registry.plan(ch).d_features) and score.shape == (4,)
        score.mean().backward()  # through D into G
        assert all(p.grad is not None for p in G.parameters())
        assert (count_params(G), count_params(D)) == registry.param_counts(ch)


@pytest.mark.parametrize("size", [16, 32, 64, 200])
def test_larger_images_reach_the_image_side_and_bound_d(size):
    """Built on the meta device: real shapes, no memory or compute (and no autograd, BatchNorm in eval mode: on meta,
    training mode's batch statistics are a long Python decomposition)."""
    cfg = config.load("v2", [f"data.image_size={size}", "space.start_side=[4, 25]", "space.max_params=null"])
    for ch in samples(cfg, 40, seed=size):
        assert_valid(ch, cfg.space)
        with torch.device("meta"), torch.no_grad():
            G, D = (m.eval() for m in build(ch))
            fake = G(noise(ch, 2, device="meta"))
            _, out = D(fake)
        assert fake.shape == (2, 3, size, size) and out.shape == (2,)
        assert (count_params(G), count_params(D)) == registry.param_counts(ch)


def test_max_params_redraws_v2_chromosomes():
    cfg = v2_config(space={"max_params": 3000})
    rng = np.random.default_rng(0)
    drawn = [registry.sample(cfg.space, 12, 3, rng) for _ in range(30)]
    assert all(sum(registry.param_counts(ch)) <= 3000 for ch, _ in drawn) and sum(r for _, r in drawn) > 0


def test_json_round_trip_and_ids_of_both_chromosome_types():
    for ch in samples(v2_config(), 100, seed=4):
        back = registry.from_json(ch.to_json())
        assert back == ch and back.id == ch.id and '"space":"v2"' in ch.to_json()
    v1, _ = registry.sample(config.load("demo").space, 16, 3, np.random.default_rng(0))
    assert registry.from_json(v1.to_json()) == v1 and '"space"' not in v1.to_json()  # seed-v1 JSON as before v2
    assert isinstance(registry.from_json(v1.to_json()), seed_v1.SeedV1Chromosome)


# ---------------------------------------------------------------------------------------------------------
# layers


def _conv(**genes) -> Conv:
    return Conv(**{"channels": 4, "kernel": 3, "stride": 1, "norm": "none", "activation": "relu", "skip": False, **genes})


def _block(c_in: int, conv: Conv, transposed: bool, side: int = 8) -> ConvBlock:
    return ConvBlock(v2.conv_layer("block", c_in, side, conv, transposed))


def test_block_genes_build_what_they_say():
    x = torch.randn(2, 3, 8, 8)
    assert _block(3, _conv(stride=2, kernel=4), transposed=False)(x).shape == (2, 4, 4, 4)
    assert _block(3, _conv(stride=2, kernel=3), transposed=True)(x).shape == (2, 4, 16, 16)
    assert _block(3, _conv(pool="max"), transposed=False)(x).shape == (2, 4, 4, 4)
    avg = _block(3, _conv(pool="avg", activation="tanh"), transposed=False)
    y = avg.main(x)
    assert torch.allclose(avg(x), torch.nn.functional.avg_pool2d(y, 2))
    leaky = _block(3, _conv(activation="leaky_relu", norm="batch"), transposed=False).main
    assert isinstance(leaky[1], torch.nn.BatchNorm2d) and leaky[2].negative_slope == 0.2 and leaky[0].bias is None
    inorm = _block(3, _conv(norm="instance", activation="prelu"), transposed=False).main
    assert isinstance(inorm[1], torch.nn.InstanceNorm2d) and inorm[1].affine and inorm[2].weight.numel() == 4
    for name, cls in (("swish", torch.nn.SiLU), ("softplus", torch.nn.Softplus), ("sigmoid", torch.nn.Sigmoid)):
        assert isinstance(_block(3, _conv(activation=name), transposed=False).main[2], cls)


def test_a_skip_connection_adds_the_resized_projected_input():
    block = _block(3, _conv(skip=True, stride=2, kernel=4), transposed=False)
    x = torch.randn(2, 3, 8, 8)
    expected = block.main(x) + block.shortcut(torch.nn.functional.interpolate(x, size=(4, 4), mode="nearest"))
    assert torch.allclose(block(x), expected)
    same = _block(4, _conv(skip=True), transposed=True, side=5)
    x = torch.randn(2, 4, 5, 5)
    assert isinstance(same.shortcut, torch.nn.Identity) and torch.allclose(same(x), same.main(x) + x)


def test_normal_init_is_dcgans():
    ch = v2.dcgan(32, 3)
    torch.manual_seed(0)
    G, D = build(ch)
    convs = [m for m in [*G.modules(), *D.modules()] if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert abs(weights.mean()) < 1e-3 and abs(weights.std() - 0.02) < 1e-3
    scales = torch.cat([m.weight for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert abs(scales.mean() - 1) < 0.01 and abs(scales.std() - 0.02) < 0.01
    default, _ = build(replace(ch, init="default"))
    assert abs(torch.cat([m.weight.flatten() for m in default.modules()
                          if isinstance(m, torch.nn.ConvTranspose2d)]).std() - 0.02) > 0.005


# ---------------------------------------------------------------------------------------------------------
# the dcgan chromosome


def test_dcgan_is_radfords_layout_at_64px():
    ch = v2.dcgan(64, 3)
    with torch.device("meta"):
        G, D = build(ch)
        assert G(noise(ch, 2, device="meta")).shape == (2, 3, 64, 64)
    assert ch.noise_shape == (100, 1, 1) and v2.g_sides(ch) == [4, 8, 16, 32, 64]
    assert [b.channels for b in (ch.g_project, *ch.g_blocks)] == [512, 256, 128, 64]
    assert [(b.kernel, b.stride, b.norm, b.activation) for b in ch.g_blocks] == [(4, 2, "batch", "relu")] * 3
    assert (ch.g_out.kernel, ch.g_out.stride, ch.g_out.activation) == (4, 2, "tanh")
    assert [b.channels for b in ch.d_blocks] == [64, 128, 256, 512] and v2.d_sides(ch) == [32, 16, 8, 4]
    assert [b.norm for b in ch.d_blocks] == ["none", "batch", "batch", "batch"]
    assert {b.activation for b in ch.d_blocks} == {"leaky_relu"} and registry.plan(ch).d_features == 512 * 4 * 4 and not ch.d_fc
    assert ch.g_opt == ch.d_opt == Optimiser("adam", 2e-4, 0.5)
    assert (ch.loss, ch.init, ch.separate_batches, ch.label_smoothing) == ("bce", "normal", True, False)
    # DCGAN's 3,576,704 and 2,765,568 parameters, plus G's output bias (3) and the bias of D's unnormalised
    # first convolution (64) and of its score (1)
    assert registry.param_counts(ch) == (3_576_704 + 3, 2_765_568 + 64 + 1)
    assert (count_params(G), count_params(D)) == registry.param_counts(ch)
    assert v2.dcgan(64, 3, label_smoothing=True).label_smoothing


@pytest.mark.parametrize("size, start", [(12, 6), (16, 4), (32, 4), (200, 25), (13, 13)])
def test_dcgan_fits_any_image_size(size, start):
    ch = v2.dcgan(size, 1, width=4)
    assert_valid(ch, V2Space(), in_space=False)
    assert ch.g_project.kernel == start
    G, D = build(ch)
    assert G(noise(ch, 2)).shape == (2, 1, size, size) and D(torch.zeros(2, 1, size, size))[1].shape == (2,)


def test_dcgan_trains_on_the_demo_images():
    from neuroevo.train import data
    cfg = v2_config(train={"epochs": 2, "steps_per_epoch": 3})
    images = data.load(cfg.data, 0).array
    result, art = trainer.train_and_save(v2.dcgan(12, 3, batch_size=32, width=8), images, cfg.train, seed=0)
    assert result.status == "ok" and len(result.d_losses) == 2 and art is not None


@pytest.mark.slow
def test_the_dcgan_preset_runs_through_the_cli(tmp_path):
    """The preset as a user runs it, shrunk to the demo images: dcgan and dcgan_sn in generation 0, mutants of the
    elites after."""
    preset = config.load("dcgan")
    p = subprocess.run([sys.executable, "-m", "neuroevo", "run", "dcgan", "--set", f"out_dir={tmp_path}/runs",
                        "--set", "run_id=dcgan", *[f"--set={k}={v}" for k, v in (
                            ("data.source", "demo"), ("data.image_size", 12), ("data.subset", 128),
                            ("space.batch_size", 32), ("space.channels", "[2, 6]"), ("space.fc_units", "[4, 16]"),
                            ("space.max_flatten", 432), ("space.start_side", "[3, 6]"), ("space.decay_epoch", "[1, 1]"),
                            ("train.epochs", 2), ("train.steps_per_epoch", 1), ("evolve.population", 3),
                            ("evolve.generations", 2), ("evolve.elite_fraction", 0.34))]],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "config: dcgan with 16 --set: space v2, population 3 x 2 generations (strategy mutation)" in p.stdout
    assert "best chromosome" in p.stdout
    saved = yaml.safe_load((tmp_path / "runs" / "dcgan" / "config.yaml").read_text())
    assert saved["evolve"]["seed_chromosomes"] == ["dcgan", "dcgan_sn"]
    df = pd.read_parquet(tmp_path / "runs" / "dcgan" / "generations")
    assert len(df) == 6 and (df.status == "ok").all() and preset.evolve.strategy == "mutation"
    g0, g1 = df[df.generation.astype(int) == 0], df[df.generation.astype(int) == 1]
    assert sorted(g0.operator) == ["random", "seed", "seed"]
    assert sorted(g1.operator) == ["elite", "mutation", "mutation"]
