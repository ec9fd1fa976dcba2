"""The modern GAN recipe as genes of search space v2 (spectral norm, an EMA of G, DiffAugment, R1, n_critic, the hinge
loss with Adam beta1 0), the steps and FLOPs every training counts and logs, and the dcgan_sn baseline.

Tiny models on the CPU: each practice against its definition, then a tiny v2 run with every gene through the CLI
and the commands that read it, then bad input.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from neuroevo import config
from neuroevo.space import registry, variation
from neuroevo.space.genes import Recipe
from neuroevo.space.registry import v2
from neuroevo.store import logs
from neuroevo.train import augment, checkpoint, data, ema, flops, losses, trainer
from neuroevo.train.model import Discriminator, build, noise
from tests.conftest import StandIn, neuroevo, v2_config

EVERY_GENE = {"spectral_norms": ["none", "d", "both"], "g_emas": [0.0, 0.9], "r1_gammas": [0.0, 1.0],
              "augments": ["none", "color", "translation,cutout", "color,translation,cutout"], "n_critics": [1, 2]}


@pytest.fixture(scope="module")
def images():
    return data.load(v2_config().data, 0).array  # 128 demo pictures, 3 x 12 x 12


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: more threads on a few shared cores are slower
    yield
    torch.set_num_threads(threads)


def tiny(**genes) -> v2.V2Chromosome:
    """DCGAN's layout at 12 px and width 4 (G: z 100 -> 4 x 6 x 6 -> 3 x 12 x 12; D the mirror image), 16 a batch."""
    return dataclasses.replace(v2.dcgan(12, 3, batch_size=16, width=4), **genes)


def train_cfg(epochs: int = 1, steps: int | None = 4) -> config.TrainConfig:
    return config.TrainConfig(epochs=epochs, steps_per_epoch=steps)


class _NoModules:
    """What FlopCounterMode's module tracker offers it, without the hooks that autograd.grad on a leaf (R1, the
    gradient penalty) refuses."""
    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *_):
        pass


def flop_counter() -> FlopCounterMode:
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModules()
    return counter


# --- the genes ---------------------------------------------------------------------------------------------------


def test_chromosomes_without_the_recipe_keep_their_json_and_id_and_the_recipe_round_trips():
    plain = v2.dcgan(16, 3)
    assert not any(k in json.loads(plain.to_json()) for k in Recipe.__dataclass_fields__)
    assert plain.recipe == Recipe()
    sn = v2.dcgan_sn(16, 3)
    assert registry.from_json(sn.to_json()) == sn and sn.id != plain.id
    assert json.loads(sn.to_json())["augment"] == "color,translation,cutout"
    assert registry.from_json(plain.to_json()) == plain
    assert registry.seed("dcgan", 16, 3, 64).recipe is not None and registry.seed("dcgan_sn", 16, 3, 64) == sn


def test_one_option_lists_draw_no_random_numbers():
    """A gene a config does not search leaves every other draw as it was: the same chromosomes whatever its one
    value, and the same random state after sampling, mutating and crossing them."""
    off, fixed = v2_config(), v2_config(space={"spectral_norms": ["d"], "g_emas": [0.99], "augments": ["color"],
                                               "r1_gammas": [10.0], "n_critics": [3]})
    a, b = np.random.default_rng(0), np.random.default_rng(0)
    for _ in range(50):
        x, y = registry.sample(off.space, 12, 3, a)[0], registry.sample(fixed.space, 12, 3, b)[0]
        assert dataclasses.replace(y, **vars(Recipe())) == x
        assert y.recipe == Recipe("d", 0.99, "color", 10.0, 3)
        assert registry.mutate(x, off.space, a).recipe == Recipe() and registry.mutate(y, fixed.space, b).recipe == y.recipe
    assert a.random() == b.random()
    x1, x2 = registry.sample(off.space, 12, 3, a)[0], registry.sample(off.space, 12, 3, a)[0]
    without = {k: v for k, v in v2.GROUPS.items() if k != "recipe"}
    c, d = np.random.default_rng(1), np.random.default_rng(1)
    for _ in range(20):
        assert variation.crossover(x1, x2, v2.GROUPS, c) == variation.crossover(x1, x2, without, d)
    assert c.random() == d.random()


def test_every_recipe_value_is_drawn_mutated_into_and_crossed():
    cfg = v2_config(space=EVERY_GENE)
    rng = np.random.default_rng(0)
    chs = [registry.sample(cfg.space, 12, 3, rng)[0] for _ in range(400)]
    genes = {"spectral_norms": "spectral_norm", "g_emas": "g_ema", "augments": "augment", "r1_gammas": "r1_gamma",
             "n_critics": "n_critic"}
    for key, gene in genes.items():
        assert {getattr(ch, gene) for ch in chs} == set(getattr(cfg.space, key)), key
    parent = chs[0]
    mutants = [registry.mutate(parent, cfg.space, rng) for _ in range(3000)]
    for gene in genes.values():
        assert {getattr(m, gene) for m in mutants} > {getattr(parent, gene)}, gene
        assert sum(getattr(m, gene) != getattr(parent, gene) for m in mutants) > 5
    a, b = tiny(), v2.dcgan_sn(12, 3, 16)
    children = [registry.crossover(a, b, rng) for _ in range(200)]
    assert {c.spectral_norm for c in children} == {"none", "d"} and {c.g_ema for c in children} == {0.0, 0.999}
    assert any(c.augment != "none" and c.spectral_norm == "none" for c in children)  # gene-wise, not as one


def test_dcgan_sn_is_the_dcgan_layers_with_the_recipe_and_seeds_the_dcgan_preset():
    plain, sn = v2.dcgan(32, 3), v2.dcgan_sn(32, 3)
    assert registry.plan(sn).g == registry.plan(plain).g and registry.plan(sn).d == registry.plan(plain).d
    assert sn.loss == "hinge" and sn.spectral_norm == "d" and sn.g_ema == 0.999
    assert sn.augment == "color,translation,cutout" and sn.r1_gamma == 0 and sn.n_critic == 1
    assert sn.g_opt == sn.d_opt and (sn.g_opt.name, sn.g_opt.lr, sn.g_opt.momentum) == ("adam", 2e-4, 0.0)
    cfg = config.load("dcgan")  # the space's defaults do not offer its genes: seeds are taken as they are
    assert cfg.evolve.seed_chromosomes == ("dcgan", "dcgan_sn") and cfg.space.spectral_norms == ("none",)
    assert config.load("v2", ["space.adam_beta1=[0.0, 0.5]"]).space.adam_beta1 == (0.0, 0.5)


def test_a_saved_v2_config_without_the_recipe_keys_resumes_without_them():
    import yaml

    saved = config.to_dict(v2_config())
    for key in EVERY_GENE:
        del saved["space"][key]
    cfg = config.loads_saved(yaml.safe_dump(saved), "config.yaml")
    assert cfg.space == v2_config().space and cfg.space.n_critics == (1,) and cfg.space.augments == ("none",)


def test_diffaugment_policies_are_the_space_s():
    assert set(augment.POLICIES) == set(v2.AUGMENTS)
    cfg = v2_config(space={"augments": ["cutout,color", "translation"]})
    assert cfg.space.augments == ("color,cutout", "translation")  # written in the order they apply


# --- each practice against its definition --------------------------------------------------------------------------


def singular_value(m: nn.Module) -> float:
    """The largest singular value of the weight spectral norm divides, as a matrix along its output channels."""
    w = m.weight  # the normalised weight (eval mode: no power iteration on reading it)
    if isinstance(m, nn.ConvTranspose2d):
        w = w.transpose(0, 1)  # c_in x c_out x k x k -> c_out first
    return torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2).item()


@pytest.mark.parametrize("which", ["d", "both"])
def test_spectral_norm_leaves_every_layer_a_largest_singular_value_of_1_after_training(images, which):
    ch = tiny(spectral_norm=which, loss="hinge")
    _, G, D, _ = trainer.train(ch, images, train_cfg(steps=3), seed=0)
    normed = {"d": [D], "both": [G, D]}[which]
    for net in (G, D):
        net.eval()
        layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
        assert layers
        for m in layers:
            if net in normed:
                assert abs(singular_value(m) - 1) < 0.02, m
            else:
                assert not hasattr(m, "parametrizations")


def test_the_ema_is_the_bias_corrected_average_of_g_after_each_step():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    decay, snapshots = 0.9, []
    average = ema.EMA(G, decay)
    for _ in range(5):
        with torch.no_grad():
            for p in G.parameters():
                p.add_(torch.randn_like(p))
        G(torch.randn(8, 3))  # moves BatchNorm's running statistics
        snapshots.append([p.clone() for p in G.parameters()])
        average.update(G)
    k = len(snapshots)
    for j, p in enumerate(average.G.parameters()):
        closed = sum(decay ** (k - i) * snapshots[i - 1][j] for i in range(1, k + 1)) * (1 - decay) / (1 - decay**k)
        assert torch.allclose(p, closed, atol=1e-6)
    for a, b in zip(average.G.buffers(), G.buffers()):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in average.G.parameters())


def test_training_averages_g_after_each_of_its_steps_and_the_weights_file_samples_the_average(images, monkeypatch):
    snapshots = []

    class Recording(ema.EMA):
        def update(self, G):
            snapshots.append([p.detach().clone() for p in G.parameters()])
            super().update(G)

    monkeypatch.setattr(trainer, "EMA", Recording)
    ch = tiny(g_ema=0.8, n_critic=2)
    result, G, D, G_ema = trainer.train(ch, images, train_cfg(epochs=2, steps=4), seed=3)
    assert len(snapshots) == result.g_steps == 4
    k = len(snapshots)
    for j, p in enumerate(G_ema.parameters()):
        closed = sum(0.8 ** (k - i) * snapshots[i - 1][j] for i in range(1, k + 1)) * 0.2 / (1 - 0.8**k)
        assert torch.allclose(p, closed, atol=1e-6)
    # the average's BatchNorm statistics are its own, measured on its samples
    bn_avg, bn_g = (next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d)) for net in (G_ema, G))
    assert not torch.equal(bn_avg.running_mean, bn_g.running_mean) and bn_avg.momentum == bn_g.momentum
    saved = checkpoint.weights(ch, G, D, G_ema)
    state = torch.load(io.BytesIO(saved), weights_only=True)
    assert all(torch.equal(state["generator"][k], v) for k, v in G_ema.state_dict().items())
    assert all(torch.equal(state["raw_generator"][k], v) for k, v in G.state_dict().items())
    _, sampler = checkpoint.load_generator(io.BytesIO(saved))  # what sample, score, quality and the grids use
    assert all(torch.equal(a, b) for a, b in zip(sampler.state_dict().values(), G_ema.state_dict().values()))
    G2, D2 = build(ch)
    checkpoint.load_weights(G2, D2, saved)  # a continuation trains on G as it trained
    assert all(torch.equal(a, b) for a, b in zip(G2.state_dict().values(), G.state_dict().values()))
    old = checkpoint.weights(ch, G, D)  # a file without an average loads as before
    assert "raw_generator" not in torch.load(io.BytesIO(old), weights_only=True)
    checkpoint.load_weights(G2, D2, old)
    assert checkpoint.load_generator(io.BytesIO(old))[0] == ch


def test_diffaugment_is_seeded_differentiable_and_lets_gradients_reach_g():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 16, 16) * 2 - 1

    def run(policy, seed):
        return augment.DiffAugment(policy, torch.Generator().manual_seed(seed))(x)

    every = "color,translation,cutout"
    assert torch.equal(run(every, 5), run(every, 5)) and not torch.equal(run(every, 5), run(every, 6))
    assert run(every, 5).shape == x.shape
    untouched = torch.Generator().manual_seed(1)
    assert augment.DiffAugment("none", untouched)(x) is x and torch.equal(untouched.get_state(),
                                                                           torch.Generator().manual_seed(1).get_state())
    # translation: each image shifted by at most 2 px (1/8 of 16), zeros where it was shifted out
    moved = run("translation", 2)
    for img, out in zip(x, moved):
        padded = nn.functional.pad(img, [2, 2, 2, 2])
        assert any(torch.equal(out, padded[:, 2 + dy:18 + dy, 2 + dx:18 + dx]) for dy in range(-2, 3) for dx in range(-2, 3))
    # cutout: an 8 x 8 square (at most) of each image zeroed, the rest unchanged
    cut = run("cutout", 3)
    zeroed = (cut == 0).all(dim=1)
    assert torch.equal(cut[:, :, ~zeroed[0]][0], x[0][:, ~zeroed[0]]) and 0 < zeroed.sum(dim=(1, 2)).max() <= 64
    # gradients reach G through augmented fakes
    ch = tiny()
    G, D = build(ch)
    fake = G(noise(ch, 4))
    score = D(augment.DiffAugment(every, torch.Generator().manual_seed(0))(fake))[1]
    score.sum().backward()
    for p in G.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0 and torch.isfinite(p.grad).all()


def test_r1_is_half_gamma_times_the_mean_squared_gradient_norm_on_real_images():
    torch.manual_seed(0)
    D = Discriminator(registry.plan(tiny(d_blocks=(v2.Conv(4, 3, 1, "none", "softplus", False),))))
    real, fake = torch.rand(5, 3, 12, 12) * 2 - 1, torch.rand(5, 3, 12, 12) * 2 - 1
    by_hand = 0.0
    for x in real:  # one image at a time: D has no BatchNorm, so each score depends on its image alone
        x = x[None].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(D(x)[1].sum(), x)
        by_hand += grad.pow(2).sum().item() / len(real)
    for loss in ("bce", "hinge", "wgan-gp"):
        torch.manual_seed(1)
        plain = losses.Objective(loss).d_loss(D, real, fake)
        torch.manual_seed(1)  # the gradient penalty's mixing draws
        with_r1 = losses.Objective(loss, r1_gamma=10.0).d_loss(D, real, fake)
        assert with_r1.item() - plain.item() == pytest.approx(10.0 / 2 * by_hand, rel=1e-5)
    (w,) = [p for p in D.parameters() if p.ndim == 4][:1]
    penalised = losses.Objective("hinge", r1_gamma=10.0).d_loss(D, real, fake)
    assert torch.autograd.grad(penalised, w)[0].abs().sum() > 0  # D's step minimises it: a double backward


@pytest.mark.parametrize("n_critic", [1, 2, 3])
def test_d_takes_n_critic_steps_for_every_g_step(images, monkeypatch, n_critic):
    taken = []

    def recording(genes, module):
        opt, schedules = optimiser(genes, module)
        step, name = opt.step, "G" if isinstance(module, trainer.Generator) else "D"

        def counted(*args, **kwargs):
            taken.append(name)
            return step(*args, **kwargs)

        opt.step = counted
        return opt, schedules

    optimiser = trainer.optimiser
    monkeypatch.setattr(trainer, "optimiser", recording)
    result, *_ = trainer.train(tiny(n_critic=n_critic), images, train_cfg(epochs=2, steps=6), seed=0)
    assert "".join(taken) == ("D" * n_critic + "G") * (12 // n_critic)
    assert (result.d_steps, result.g_steps) == (taken.count("D"), taken.count("G")) == (12, 12 // n_critic)
    assert len(result.d_losses) == len(result.g_losses) == 2 and all(map(math.isfinite, result.g_losses))


RECIPES = {
    "plain": {},
    "n_critic 3": {"n_critic": 3},
    "sn ema augment": {"spectral_norm": "both", "g_ema": 0.9, "augment": "color,translation,cutout"},
    "feature matching, one batch": {"feature_matching": True, "separate_batches": False, "loss": "hinge"},
    "r1": {"r1_gamma": 1.0, "loss": "hinge"},
    "r1, one batch": {"r1_gamma": 1.0, "separate_batches": False},
    "wgan-gp": {"loss": "wgan-gp", "n_critic": 2},
}


@pytest.mark.parametrize("genes", RECIPES.values(), ids=RECIPES.keys())
def test_the_logged_steps_and_flops_are_those_the_training_took(images, genes):
    ch = tiny(**genes)
    counter = flop_counter()
    with counter:
        result, *_ = trainer.train(ch, images, train_cfg(epochs=2, steps=6), seed=0)
    n_critic = genes.get("n_critic", 1)
    assert (result.d_steps, result.g_steps) == (12, 12 // n_critic)
    statistics = trainer.STATISTICS_BATCHES if genes.get("g_ema") else 0  # the average's BatchNorm statistics
    assert result.train_flops == flops.train_flops(ch, 12, 12 // n_critic, g_images=statistics * ch.batch_size)
    counted = counter.get_total_flops()
    if genes.get("r1_gamma") or genes.get("loss") == "wgan-gp":  # a double backward: counted as passes of D
        assert result.train_flops == pytest.approx(counted, rel=0.1)
    else:
        assert result.train_flops == counted
    # the estimate that orders tasks is the same count, from the config
    assert flops.cost(ch, train_cfg(epochs=2, steps=6), len(images)) == flops.train_flops(ch, 12, 12 // n_critic)


def test_steps_per_epoch_may_not_ask_for_more_than_one_pass(images):
    with pytest.raises(ValueError, match=r"train.steps_per_epoch: 9 is more than one pass over the data, 8 batches"):
        trainer.train(tiny(), images, train_cfg(steps=9), seed=0)
    result, *_ = trainer.train(tiny(), images, train_cfg(steps=None), seed=0)
    assert result.d_steps == result.g_steps == len(images) // 16


def test_oom_counts_no_steps_and_results_of_several_seeds_add_up():
    from neuroevo.train.results import TrainResult, mean_result

    a = TrainResult("ok", "", 1.0, 1.0, (1.0,), (1.0,), 1, 1, 2.0, 10.0, "cpu", 4, 8, 1e9)
    oom = TrainResult("oom", "out of memory", math.nan, math.nan, (), (), 1, 1, 0.0, 0.0, "cpu")
    assert (mean_result([a, a]).g_steps, mean_result([a, a]).d_steps, mean_result([a, a]).train_flops) == (8, 16, 2e9)
    assert mean_result([a, oom]).train_flops is None and oom.g_steps is None


# --- a run with every gene, and the commands that read it ------------------------------------------------------------


def set_args(items: dict) -> list[str]:
    return [a for k, v in items.items() for a in ("--set", f"{k}={json.dumps(v) if isinstance(v, list) else v}")]


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recipe")
    torch.manual_seed(0)
    standin = tmp / "standin.pt"
    torch.jit.script(StandIn().eval()).save(str(standin))
    keys = {"data.source": "demo", "data.image_size": 12, "data.subset": 128, "space.batch_size": 16,
            "space.channels": [2, 6], "space.fc_units": [4, 16], "space.start_side": [3, 6], "space.g_blocks": [0, 1],
            "space.d_blocks": [1, 2], "space.max_flatten": 432, "space.schedules": ["none"],
            "space.adam_beta1": [0.0, 0.5], "train.epochs": 1, "train.steps_per_epoch": 4, "train.sample_grid": 4,
            "evolve.population": 4, "evolve.generations": 2, "evolve.elite_fraction": 0.5,
            "evolve.strategy": "mutation", "evolve.seed_chromosomes": ["dcgan_sn"], "resources.num_cpus": 1,
            "tracking.tensorboard": True, "quality.evaluate": "all", "quality.samples": 16,
            "quality.reference_images": 32, "quality.kid_subsets": 4, "quality.kid_subset_size": 8,
            "quality.extractor_weights": str(standin), "out_dir": str(tmp / "runs"), "run_id": "r",
            **{f"space.{k}": v for k, v in EVERY_GENE.items()}}
    p = neuroevo("run", "v2", "--quiet", *set_args(keys), cwd=tmp, timeout=600)
    assert p.returncode == 0, p.stderr
    return tmp / "runs" / "r", tmp


@pytest.mark.slow
def test_a_run_logs_every_gene_its_steps_and_its_flops(recipe_run):
    run_dir, _ = recipe_run
    df = logs.read_generations(run_dir)
    assert len(df) == 8 and (df.status == "ok").all() and (df.schema_version == logs.SCHEMA_VERSION).all()
    for _, row in df.iterrows():
        ch = registry.from_json(row.chromosome)
        r = ch.recipe
        assert (row.spectral_norm, row.g_ema, row.augment, row.r1_gamma, row.n_critic) == \
               (r.spectral_norm, r.g_ema, r.augment, r.r1_gamma, r.n_critic)
        assert (row.d_steps, row.g_steps) == (4, 4 // r.n_critic)
        statistics = trainer.STATISTICS_BATCHES * ch.batch_size if r.g_ema and any(
            layer.norm == "batch" for layer in registry.plan(ch).g) else 0
        assert row.train_flops == flops.train_flops(ch, 4, 4 // r.n_critic, g_images=statistics)
        g_forward = sum(flops.layer_flops(ch)[0])
        assert row.quality_flops > row.quality_samples * g_forward
    seed = df[df.operator == "seed"].iloc[0]
    assert registry.from_json(seed.chromosome) == v2.dcgan_sn(12, 3, 16)
    assert df.spectral_norm.nunique() > 1 and df.augment.nunique() > 1


@pytest.mark.slow
def test_best_report_ls_sample_score_and_query_read_the_recipe_and_the_compute(recipe_run, tmp_path):
    run_dir, _ = recipe_run
    df = logs.read_generations(run_dir)
    total = df.train_flops.sum() + df.quality_flops.sum()
    best = neuroevo("best", run_dir)
    assert best.returncode == 0, best.stderr
    assert "training  G " in best.stdout and " FLOPs in " in best.stdout
    assert f"run total {total:.3g} FLOPs in " in best.stdout
    report = neuroevo("report", run_dir, "--out", tmp_path / "report")
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report" / "report.html").read_text()
    assert f"Compute: {total:.3g} FLOPs" in page and "<th>practices</th>" in page and "<th>train_flops</th>" in page
    ls = json.loads(neuroevo("ls", run_dir.parent, "--format", "json").stdout)[0]
    assert ls["flops"] == pytest.approx(total) and ls["seconds"] > 0
    assert "flops" in neuroevo("ls", run_dir.parent).stdout.splitlines()[0]
    sample = neuroevo("sample", run_dir, "--n", "4", "--out", tmp_path / "grid.png")
    assert sample.returncode == 0 and (tmp_path / "grid.png").is_file(), sample.stderr
    score = neuroevo("score", run_dir, "--samples", "16")
    assert score.returncode == 0 and "FID " in score.stdout, score.stderr
    query = neuroevo("query", run_dir, "--columns", "chromosome_id, spectral_norm, g_ema, augment, r1_gamma, "
                     "n_critic, g_steps, d_steps, train_flops, quality_flops", "--format", "json")
    assert query.returncode == 0, query.stderr
    rows = json.loads(query.stdout)
    assert len(rows) == 8 and all(r["train_flops"] > 0 and r["g_steps"] >= 2 for r in rows)


@pytest.mark.slow
def test_tensorboard_hparams_hold_the_recipe_genes(recipe_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = recipe_run
    sessions = list((run_dir / "tensorboard" / "chromosomes").iterdir())
    acc = EventAccumulator(str(sessions[0]))
    acc.Reload()
    start = acc.summary_metadata["_hparams_/session_start_info"].plugin_data.content
    for gene in ("spectral_norm", "g_ema", "augment", "r1_gamma", "n_critic"):
        assert gene.encode() in start


# --- bad input: one line naming the key and what it allows, before Ray starts ----------------------------------------


BAD = [
    (["space.spectral_norms=[sn]"], "space.spectral_norms.0: expected 'none', 'd' or 'both', got 'sn'"),
    (["space.g_emas=[1.0]"], "space.g_emas.0: input should be less than 1 (got 1.0)"),
    (["space.g_emas=[-0.5]"], "space.g_emas.0: input should be greater than or equal to 0 (got -0.5)"),
    (["space.augments=[colour]"], "space.augments.0: expected 'none' or DiffAugment policies from color, translation, "
                                  "cutout joined by commas, e.g. 'color,translation,cutout' (got 'colour')"),
    (["space.augments=['color,color']"], "space.augments.0: expected 'none' or DiffAugment policies from"),
    (["space.r1_gammas=[-1]"], "space.r1_gammas.0: input should be greater than or equal to 0 (got -1)"),
    (["space.n_critics=[0]"], "space.n_critics.0: input should be greater than or equal to 1 (got 0)"),
    (["space.adam_beta1=[-0.1, 0.5]"], "space.adam_beta1.0: input should be greater than or equal to 0 (got -0.1)"),
    (["evolve.seed_chromosomes=[dcgan_gp]"], "evolve.seed_chromosomes.0: expected 'dcgan' or 'dcgan_sn', got 'dcgan_gp'"),
    (["train.steps_per_epoch=9"], "train.steps_per_epoch: 9 is more than one pass over the data, which is 8 batches "
                                  "(128 images, space.batch_size=16); set at most 8, or null"),
    (["space.n_critics=[1, 3]", "train.steps_per_epoch=2"],
     "space.n_critics: 3 D steps per G step do not fit an epoch of 2 batches"),
]


@pytest.mark.slow
@pytest.mark.parametrize("overrides, message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_recipe_input_is_one_line_and_exit_2_before_ray_starts(tmp_path, overrides, message):
    tiny = ["data.source=demo", "data.image_size=12", "data.subset=128", "space.batch_size=16",
            "space.start_side=[3, 6]", "space.max_flatten=432", "space.decay_epoch=[1, 1]", "train.epochs=2",
            f"out_dir={tmp_path}/runs"]
    p = neuroevo("run", "v2", *[a for o in tiny + overrides for a in ("--set", o)], cwd=tmp_path, timeout=120)
    assert p.returncode == 2 and p.stdout == "", (p.stdout, p.stderr)
    assert p.stderr.startswith(f"neuroevo: error: {message}") and len(p.stderr.splitlines()) == 1, p.stderr
    assert not (tmp_path / "runs").exists()
