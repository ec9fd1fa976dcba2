"""evolve.inherit: a child starts from its parents' trained weights. Layers matched through the plans keep theirs,
widened layers and new residual blocks keep the function, changed layers start fresh, a crossover child takes G and
D from the parents that gave them; a run with inherit all logs what each member inherited."""

import dataclasses
import io

import numpy as np
import pytest
import torch

from neuroevo import config
from neuroevo.evolve import population
from neuroevo.space import alignment, registry
from neuroevo.space.genes import Optimiser
from neuroevo.space.v2 import Conv, Dense, V2Chromosome
from neuroevo.store import logs, rundir
from neuroevo.train import inherit
from neuroevo.train.checkpoint import weights
from neuroevo.train.model import Discriminator, Generator, build, layer_modules, noise
from neuroevo.train.results import Start
from tests.conftest import TINY_V2_SPACE, neuroevo, samples, tiny_dict, v2_config

replace = dataclasses.replace

# 8 px: G fc(prelu, BatchNorm1d) -> project 4x4 -> a residual block -> 8x8 out; D two blocks (one residual, PReLU,
# InstanceNorm) -> fc(swish) -> score. Every kind of tensor the model has.
PARENT = V2Chromosome(
    image_size=8, image_channels=3, noise_dim=6,
    g_fc=(Dense(10, "batch", "prelu"),),
    g_project=Conv(8, 4, 1, "batch", "relu", False),
    g_blocks=(Conv(8, 3, 1, "batch", "leaky_relu", True),),
    g_out=Conv(3, 4, 2, "none", "tanh", False),
    d_blocks=(Conv(6, 3, 2, "none", "leaky_relu", False), Conv(6, 3, 1, "instance", "prelu", True)),
    d_fc=(Dense(12, "none", "swish"),),
    loss="bce", g_opt=Optimiser("adam", 2e-4, 0.5), d_opt=Optimiser("adam", 2e-4, 0.5), label_smoothing=False,
    feature_matching=False, init="default", separate_batches=False, batch_size=4)


def trained(ch, seed: int = 0) -> tuple[Generator, Discriminator]:
    """G and D of `ch` with every tensor drawn at random, as if trained: weights, norms, running statistics."""
    torch.manual_seed(seed)
    G, D = build(ch)
    with torch.no_grad():
        for t in [*G.state_dict().values(), *D.state_dict().values()]:
            if t.is_floating_point():
                ones = t.min() == 1 and t.max() == 1  # norm scales, running variances
                t.copy_(torch.rand_like(t) + 0.5 if ones else torch.randn_like(t) * 0.3)
    return G, D


def child_of(parent: V2Chromosome, child: V2Chromosome, seed: int = 1) -> tuple[Generator, Discriminator, float]:
    """The child's G and D as they start from the parent's trained weights, and the fraction inherited."""
    G, D = trained(parent)
    start = Start({parent.id: weights(parent, G, D)}, {parent.id: 7})
    file, inherited = inherit.start_weights(child, seed, start)
    state = torch.load(io.BytesIO(file), weights_only=True)
    cG, cD = build(child)
    cG.load_state_dict(state["generator"])
    cD.load_state_dict(state["discriminator"])
    return cG, cD, inherited.fraction


def outputs(ch, G, D) -> tuple[torch.Tensor, torch.Tensor]:
    """G's images and D's scores of them, in eval mode, on fixed noise. shapes: 5 x 3 x 8 x 8, 5"""
    G.eval(), D.eval()
    with torch.no_grad():
        images = G(noise(ch, 5, generator=torch.Generator().manual_seed(3)))
        return images, D(images)[1]


def module_state(net: torch.nn.Module, module: str) -> dict[str, torch.Tensor]:
    return {k[len(module) + 1:]: v for k, v in net.state_dict().items() if k.startswith(module + ".")}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_layer_modules_name_every_tensor_of_the_networks_once():
    """The map from plan layers to state_dict keys that inheritance reads is the model's own, for every space."""
    cfg = v2_config()
    seed_v1 = config.from_dict(tiny_dict())
    chromosomes = [PARENT, *samples(cfg, 20)]
    rng = np.random.default_rng(0)
    chromosomes += [registry.sample(seed_v1.space, 12, 3, rng)[0] for _ in range(5)]
    for ch in chromosomes:
        G, D = build(ch)
        for net, mods in zip((G, D), layer_modules(registry.plan(ch))):
            prefixes = [m for layer in mods for m in (layer.weights, layer.norm, layer.activation, layer.shortcut) if m]
            owners = {k: [p for p in prefixes if k.startswith(p + ".")] for k in net.state_dict()}
            assert all(len(o) == 1 for o in owners.values()), owners


def test_equal_genes_give_a_bit_identical_generator_before_training():
    """A child of other learning rates only (an lr mutation) starts exactly where its parent ended."""
    child = replace(PARENT, g_opt=Optimiser("adam", 3e-4, 0.5))
    pG, pD = trained(PARENT)
    cG, cD, fraction = child_of(PARENT, child)
    assert fraction == 1.0
    assert same(pG.state_dict(), cG.state_dict()) and same(pD.state_dict(), cD.state_dict())
    for a, b in zip(outputs(PARENT, pG, pD), outputs(child, cG, cD)):
        assert torch.equal(a, b)


def test_an_elite_continues_from_its_own_file_unchanged():
    G, D = trained(PARENT)
    file = weights(PARENT, G, D)
    out, inherited = inherit.start_weights(PARENT, 5, Start({PARENT.id: file}, {PARENT.id: 12}))
    assert out == file and inherited.parents == (PARENT.id,) and inherited.fraction == 1.0 and inherited.steps == 12


def test_widened_layers_keep_the_function():
    """Net2WiderNet: more channels in G's fc, projection and residual block, D's two blocks (into its flatten):
    identity skips become projections, and the outputs are the parent's."""
    child = replace(PARENT, g_fc=(Dense(13, "batch", "prelu"),), g_project=replace(PARENT.g_project, channels=10),
                    g_blocks=(replace(PARENT.g_blocks[0], channels=11),),
                    d_blocks=(replace(PARENT.d_blocks[0], channels=7), replace(PARENT.d_blocks[1], channels=9)))
    pG, pD = trained(PARENT)
    cG, cD, fraction = child_of(PARENT, child)
    for a, b in zip(outputs(PARENT, pG, pD), outputs(child, cG, cD)):  # images, and D's scores of them
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    # the new projections are made, not inherited: not all of the child's parameters came from the parent
    assert 0.8 < fraction < 1.0


def test_a_changed_layer_starts_fresh_and_every_other_layer_is_the_parents():
    child = replace(PARENT, g_blocks=(replace(PARENT.g_blocks[0], kernel=5),))  # another kernel: other shapes
    pG, pD = trained(PARENT)
    cG, cD, fraction = child_of(PARENT, child, seed=1)
    torch.manual_seed(1)
    fresh, _ = build(child)
    g_mods = layer_modules(registry.plan(child))[0]
    for layer, mods in zip(registry.plan(child).g, g_mods):
        for module in (mods.weights, mods.norm, mods.activation):
            if module:
                want = fresh if layer.name == "block 1" else pG
                assert same(module_state(cG, module), module_state(want, module)), (layer.name, module)
    assert same(cD.state_dict(), pD.state_dict())
    assert 0 < fraction < 1


def test_a_changed_activation_or_norm_keeps_the_convolution():
    child = replace(PARENT, g_blocks=(replace(PARENT.g_blocks[0], activation="tanh", norm="instance"),))
    pG, _ = trained(PARENT)
    cG, _, _ = child_of(PARENT, child)
    torch.manual_seed(1)
    fresh, _ = build(child)
    block = layer_modules(registry.plan(child))[0][2]
    assert same(module_state(cG, block.weights), module_state(pG, block.weights))
    assert same(module_state(cG, block.norm), module_state(fresh, block.norm))  # InstanceNorm, not BatchNorm's


def test_an_inserted_residual_block_starts_as_the_identity():
    """A new stride-1 residual block, anywhere, with as many or more channels: the outputs stay; after it, the
    layers keep their weights (aligned, not shifted)."""
    g_new = Conv(8, 3, 1, "batch", "tanh", True)  # as many channels: the identity skip; BatchNorm zeroed
    d_new = Conv(8, 3, 1, "none", "leaky_relu", True)  # more channels: a projection that copies; the conv zeroed
    child = replace(PARENT, g_blocks=(*PARENT.g_blocks, g_new), d_blocks=(PARENT.d_blocks[0], d_new, PARENT.d_blocks[1]))
    assert alignment.align(registry.plan(PARENT).d, registry.plan(child).d) == (0, None, 1, 2, 3)
    pG, pD = trained(PARENT)
    cG, cD, fraction = child_of(PARENT, child)
    for a, b in zip(outputs(PARENT, pG, pD), outputs(child, cG, cD)):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    assert 0.5 < fraction < 1
    # where zeroing cannot give the identity (sigmoid(0) = 0.5; relu's branch would never learn), it starts fresh
    for activation in ("sigmoid", "relu"):
        other = replace(child, g_blocks=(*PARENT.g_blocks, replace(g_new, activation=activation)))
        cG, _, _ = child_of(PARENT, other)
        torch.manual_seed(1)
        fresh, _ = build(other)
        block = layer_modules(registry.plan(other))[0][3]
        assert same(module_state(cG, block.norm), module_state(fresh, block.norm))


def test_a_crossover_child_takes_g_from_its_g_parent_and_d_from_its_d_parent():
    a = PARENT
    b = replace(PARENT, noise_dim=5, g_fc=(), g_project=Conv(6, 4, 1, "instance", "swish", False), g_blocks=(),
                d_blocks=(Conv(5, 3, 2, "batch", "tanh", True),), d_fc=())
    child = replace(a, d_blocks=b.d_blocks, d_fc=b.d_fc)  # G of a, D of b
    aG, aD = trained(a, seed=0)
    bG, bD = trained(b, seed=1)
    start = Start({b.id: weights(b, bG, bD), a.id: weights(a, aG, aD)}, {a.id: 3, b.id: 5})
    file, inherited = inherit.start_weights(child, 2, start)
    state = torch.load(io.BytesIO(file), weights_only=True)
    assert same(state["generator"], aG.state_dict()) and same(state["discriminator"], bD.state_dict())
    assert inherited.parents == (a.id, b.id) and inherited.fraction == 1.0 and inherited.steps == 5


def test_children_start_from_their_parents_where_inherit_says():
    elites_only = v2_config(evolve={"strategy": "mutation", "keep_weights": True})
    every = v2_config(evolve={"strategy": "mutation", "inherit": "all"})
    assert config.inheritance(elites_only.evolve) == "elites" and config.inheritance(every.evolve) == "all"
    elite = population.Member(PARENT, 0, 0, (PARENT.id,), "elite")
    mutant = population.Member(PARENT, 1, 0, ("abc",), "mutation")
    fresh = population.Member(PARENT, 1, 0, (), "random")
    assert [population.inherits(elites_only, 1, m) for m in (elite, mutant, fresh)] == [True, False, False]
    assert [population.inherits(every, 1, m) for m in (elite, mutant, fresh)] == [True, True, False]
    none = v2_config(evolve={"strategy": "mutation"})
    assert not any(population.inherits(none, 1, m) for m in (elite, mutant, fresh))


def test_the_weights_kept_are_those_of_the_next_generations_parents():
    """inherit all with tournaments: any member may be a parent, and exactly the parents' weights are kept."""
    cfg = v2_config(evolve={"population": 8, "elite_fraction": 0.25, "strategy": "tournament", "inherit": "all"})
    members = population.initial_population(cfg)
    evaluated = [population.Evaluated(m, fitness=0.1 * i) for i, m in enumerate(members)]
    parents = {p for m in population.next_population(cfg, 1, evaluated) for p in m.parents}
    kept = population.weights_kept(cfg, 0, evaluated)
    assert {m.chromosome.id for m in kept} == parents and len(parents) > 2  # more than the two elites
    assert population.weights_kept(replace(cfg, evolve=replace(cfg.evolve, inherit="elites")), 0, evaluated) == \
        population.elites(cfg, evaluated)
    assert population.weights_kept(replace(cfg, evolve=replace(cfg.evolve, inherit="none")), 0, evaluated) == []


def test_the_driver_holds_the_weights_of_every_member_that_may_be_a_parent():
    from neuroevo.execution import dispatch

    def kept(**evolve):
        return dispatch.kept_places(v2_config(evolve={"population": 6, "elite_fraction": 0.34, **evolve}))

    assert kept() == 1  # the best's
    assert kept(strategy="mutation", keep_weights=True) == kept(strategy="crossover", inherit="all") == 2  # elites'
    assert kept(strategy="tournament", inherit="all") is None  # any member may win a tournament


def test_a_config_saved_before_evolve_inherit_resumes_without_it():
    text = config.to_yaml(config.load("demo", ["evolve.keep_weights=true"]))
    older = "\n".join(line for line in text.splitlines() if not line.strip().startswith("inherit:"))
    saved = config.loads_saved(older, "config.yaml")
    assert saved.evolve.inherit == "none" and config.inheritance(saved.evolve) == "elites"


@pytest.mark.slow
def test_an_unknown_inherit_value_is_one_line_naming_the_key_and_its_values(tmp_path):
    p = neuroevo("run", "demo", "--set", "evolve.inherit=everything", "--set", f"out_dir={tmp_path}")
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "evolve.inherit" in lines[0], p.stderr
    assert all(v in lines[0] for v in ("'none'", "'elites'", "'all'")), lines[0]


@pytest.mark.slow
def test_a_run_with_inherit_all_logs_what_each_member_inherited(tmp_path):
    import neuroevo as api

    space = {**TINY_V2_SPACE, "channels": [2, 4], "fc_units": [4, 8], "d_blocks": [1, 3], "max_params": 20_000}
    overrides = [f"space.{k}={v}" for k, v in space.items() if k != "name"] + [
        "data.source=demo", "data.image_size=12", "data.subset=64", "train.epochs=2", "train.steps_per_epoch=1",
        "train.sample_grid=4", "evolve.population=4", "evolve.generations=3", "evolve.elite_fraction=0.5",
        "evolve.strategy=mutation", "evolve.inherit=all", "resources.num_cpus=1", "resources.num_gpus=0",
        "tracking.tensorboard=false", "fitness.scale=1e4"]
    overrides = [o.replace(" ", "") for o in overrides]
    result = api.run("v2", overrides, out_dir=str(tmp_path), run_id="inherit")
    df = logs.read_generations(result.run_dir)
    ok = df[df.status == "ok"]
    first = ok[ok.generation == 0]
    assert (first.inherited_fraction == 0).all() and first.inherited_from.map(len).eq(0).all()
    assert (first.lineage_steps == 2).all()
    later = ok[ok.generation > 0]
    mutants, elites = later[later.operator == "mutation"], later[later.operator == "elite"]
    assert len(mutants) and len(elites)
    assert all(list(f) == list(p) for f, p in zip(mutants.inherited_from, mutants.parents))
    assert (mutants.inherited_fraction > 0).all() and (mutants.inherited_fraction <= 1).all()
    assert (elites.inherited_fraction == 1).all() and (elites.lineage_steps >= 4).all()
    assert all(list(f) == [i] for f, i in zip(elites.inherited_from, elites.chromosome_id))
    steps = df.set_index(["generation", "chromosome_id"]).lineage_steps
    for row in mutants.itertuples():
        assert row.lineage_steps == 2 + steps[(row.generation - 1, row.parents[0])]
    # each parent's weights were kept for its children
    for row in later.itertuples():
        for p in row.parents:
            assert rundir.weights_file(result.run_dir, row.generation, p).is_file()
    # stopped after two generations and resumed for the third, it logs the same: the parents' weights were kept
    part = api.run("v2", [*overrides, "evolve.generations=2"], out_dir=str(tmp_path), run_id="part").run_dir
    api.run(resume=part, overrides=["evolve.generations=3"])
    resumed = logs.read_generations(part)
    key = ["generation", "chromosome_id"]
    a, b = df.sort_values(key).reset_index(drop=True), resumed.sort_values(key).reset_index(drop=True)
    for col in ("chromosome_id", "d_loss", "g_loss", "fitness", "inherited_from", "inherited_fraction", "lineage_steps"):
        assert a[col].map(str).tolist() == b[col].map(str).tolist(), col
    # the run's commands read it
    for command in (["best", result.run_dir], ["report", result.run_dir, "--out", tmp_path / "report"],
                    ["query", result.run_dir, "--where", "operator = 'mutation' AND inherited_fraction > 0",
                     "--columns", "chromosome_id, inherited_from, inherited_fraction, lineage_steps"]):
        p = neuroevo(*command)
        assert p.returncode == 0, (command, p.stderr)
