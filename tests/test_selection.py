"""Selection strategies: mutation and crossover give valid chromosomes and record their parents; short evolution
runs with every strategy, seeds and kept weights log what made each row; old state files still load."""

import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from neuroevo import config
from neuroevo.evolve import population, selection
from neuroevo.evolve.fitness import Evaluation
from neuroevo.execution import loop
from neuroevo.space import registry, v2
from neuroevo.space.v2 import V2Chromosome
from neuroevo.store import logs, rundir
from neuroevo.store.resume import drawn
from neuroevo.store.state import load as load_state
from neuroevo.train import data
from neuroevo.train.model import build, noise
from tests.conftest import assert_valid, samples, v2_config

# ---------------------------------------------------------------------------------------------------------
# pure functions


def test_rank_and_elites_break_ties_by_id():
    assert selection.rank(["a", "b", "c"], [0.5, 0.9, 0.5], ["z", "y", "x"]) == ["b", "c", "a"]
    assert selection.elites(["a", "b", "c"], [0.5, 0.9, 0.5], ["z", "y", "x"], 2) == ["b", "c"]


def test_tournament_picks_the_fittest_entrant():
    fitness, ids = [0.1, 0.9, 0.5, 0.3], ["a", "b", "c", "d"]
    rng = np.random.default_rng(0)
    assert selection.tournament(fitness, ids, 4, rng) == 1  # everyone enters: the best wins
    wins = Counter(selection.tournament(fitness, ids, 2, rng) for _ in range(2000))
    assert wins[0] == 0 and wins[1] > wins[2] > wins[3] > 0  # the worst never wins a tournament of 2


def _kinds(parent: V2Chromosome, child: V2Chromosome) -> str:
    if len(child.g_blocks) + len(child.d_blocks) + len(child.g_fc) + len(child.d_fc) > \
            len(parent.g_blocks) + len(parent.d_blocks) + len(parent.g_fc) + len(parent.d_fc):
        return "add"
    if len(child.g_blocks) + len(child.d_blocks) + len(child.g_fc) + len(child.d_fc) < \
            len(parent.g_blocks) + len(parent.d_blocks) + len(parent.g_fc) + len(parent.d_fc):
        return "remove"
    if replace(child, g_opt=replace(child.g_opt, lr=parent.g_opt.lr), d_opt=replace(child.d_opt, lr=parent.d_opt.lr)) == parent:
        return "lr"
    return "gene"


def test_v2_mutations_are_valid_single_changes_of_every_kind():
    cfg = v2_config()
    rng = np.random.default_rng(0)
    kinds = Counter()
    for parent in samples(cfg, 400, seed=7):
        child = registry.mutate(parent, cfg.space, rng)
        assert_valid(child, cfg.space)
        assert child != parent and child.image_size == parent.image_size
        assert child.upsamplings == parent.upsamplings and v2.d_halvings(child) == v2.d_halvings(parent)
        kinds[_kinds(parent, child)] += 1
    assert set(kinds) == {"gene", "add", "remove", "lr"} and min(kinds.values()) > 40, kinds


def test_chains_of_mutations_stay_valid_and_build():
    cfg = v2_config()
    unbounded = replace(cfg.space, max_params=None)  # mutate() ignores max_params; selection.breed enforces it
    rng = np.random.default_rng(1)
    for ch in samples(cfg, 20, seed=8):
        for _ in range(25):
            ch = registry.mutate(ch, cfg.space, rng)
            assert_valid(ch, unbounded)
        G, D = build(ch)
        assert D(G(noise(ch, 2)))[1].shape == (2,)


def test_mutating_dcgan_keeps_it_valid():
    """A seed need not lie within the space; its mutants still build."""
    space = config.load("v2").space
    rng = np.random.default_rng(2)
    parent = v2.dcgan(64, 3)
    for _ in range(200):
        child = registry.mutate(parent, space, rng)
        assert_valid(child, space, in_space=False)
        assert registry.plan(child).d_features <= registry.plan(parent).d_features  # D's last block never grows past the flatten bound


def test_seed_v1_mutations_keep_the_reference_invariants():
    cfg = config.load("demo")
    s = cfg.space
    rng = np.random.default_rng(3)
    parents = [registry.sample(s, 16, 3, rng)[0] for _ in range(300)]
    for parent in parents:
        child = registry.mutate(parent, s, rng)
        assert child.noise_side + sum(b.kernel - 1 for b in child.g_blocks) + child.g_out_kernel - 1 == 16
        assert child.d_feature_side >= 1
        assert s.g_blocks[0] <= len(child.g_blocks) <= s.g_blocks[1] and s.d_blocks[0] <= len(child.d_blocks) <= s.d_blocks[1]
        assert all(s.kernel[0] <= b.kernel <= s.kernel[1] for b in child.g_blocks + child.d_blocks)
        assert s.lr[0] <= child.g_lr <= s.lr[1] and s.lr[0] <= child.d_lr <= s.lr[1]
        G, D = build(child)
        assert G(noise(child, 2)).shape == (2, 3, 16, 16)


@pytest.mark.parametrize("space", ["v2", "seed-v1"])
def test_crossover_takes_each_gene_group_from_a_parent(space):
    cfg = v2_config() if space == "v2" else config.load("demo")
    groups = registry.of(space).GROUPS
    rng = np.random.default_rng(4)
    chs = [registry.sample(cfg.space, cfg.data.image_size, 3, rng)[0] for _ in range(200)]
    swapped_networks = 0
    for a, b in zip(chs[::2], chs[1::2]):
        child = registry.crossover(a, b, rng)
        if space == "v2":
            assert_valid(child, cfg.space, in_space=False)
        for group in (g for part in groups.values() for g in part):
            assert any(all(getattr(child, f) == getattr(p, f) for f in group) for p in (a, b)), group
        swapped_networks += all(getattr(child, f) == getattr(b, f) for g in groups["d"] for f in g) and \
            all(getattr(child, f) == getattr(a, f) for g in groups["g"] for f in g)
        G, D = build(child)
        assert G(noise(child, 2)).shape[-1] == cfg.data.image_size
    assert swapped_networks > 10  # G of one parent with D of the other happens


@pytest.mark.parametrize("strategy", ["mutation", "crossover", "tournament"])
def test_breed_records_parents_and_operator_and_makes_new_chromosomes(strategy):
    cfg = v2_config()
    population = samples(cfg, 6, seed=9)
    fitness = [0.1, 0.6, 0.3, 0.9, 0.2, 0.5]
    elite_ids = {population[3].id, population[1].id}
    children = selection.breed(strategy, population, fitness, 2, 20, cfg.space, np.random.default_rng(0))
    assert len(children) == 20 and len({c.chromosome.id for c in children} | {ch.id for ch in population}) == 26
    for c in children:
        assert c.operator == strategy and c.rejected >= 0
        assert_valid(c.chromosome, cfg.space, in_space=False)
        assert sum(registry.param_counts(c.chromosome)) <= cfg.space.max_params
        if strategy == "crossover":
            assert len(c.parents) == 2 and set(c.parents) == elite_ids
        elif strategy == "mutation":
            assert len(c.parents) == 1 and c.parents[0] in elite_ids
        else:
            assert len(c.parents) == 1 and c.parents[0] in {ch.id for ch in population}
    if strategy == "tournament":  # non-elites have children too, the fittest most
        counts = Counter(c.parents[0] for c in children)
        assert counts[population[3].id] == max(counts.values())


def test_breed_falls_back_to_random_when_no_new_child_exists():
    cfg = v2_config()
    population = samples(cfg, 3, seed=10)
    tight = replace(cfg.space, max_params=1)  # no child can fit; random draws then fail too
    with pytest.raises(registry.SpaceTooTight):
        selection.breed("mutation", population, [1.0, 0.5, 0.2], 1, 1, tight, np.random.default_rng(0), max_tries=5)
    children = selection.breed("mutation", population, [1.0, 0.5, 0.2], 1, 1,
                               replace(cfg.space, max_params=sum(registry.param_counts(population[0])) + 10**6),
                               np.random.default_rng(0), max_tries=0)
    assert children[0].operator == "random" and children[0].parents == ()


# ---------------------------------------------------------------------------------------------------------
# short evolution runs on a real local Ray instance


def _evolve(cfg, run_dir, state=None):
    run_dir.mkdir(exist_ok=True)
    return loop.evolve(cfg, run_dir.name, run_dir, data.load(cfg.data, cfg.seed).array, state)


def _assert_lineage(df: pd.DataFrame, strategy: str, n_elite: int) -> None:
    """Each row's operator and parents say where it came from."""
    assert set(df.operator) <= set(selection.OPERATORS)
    for g, rows in df.groupby("generation"):
        before = df[df.generation == g - 1]
        if g == 0:
            assert set(rows.operator) <= {"random", "seed"} and rows.parents.map(len).eq(0).all()
            continue
        elites = rows[rows.is_elite]
        assert len(elites) == n_elite and (elites.operator == "elite").all()
        assert all(list(p) == [i] for p, i in zip(elites.parents, elites.chromosome_id))
        assert set(elites.chromosome_id) == set(
            before.sort_values(["fitness", "chromosome_id"], ascending=[False, True]).chromosome_id[:n_elite])
        born = rows[~rows.is_elite]
        assert (born.born_generation == g).all() and not set(born.chromosome_id) & set(before.chromosome_id)
        ops = set(born.operator) - {"random"} if strategy != "random" else set(born.operator)
        assert ops == {strategy}
        for row in born[born.operator != "random"].itertuples():
            parents = set(row.parents)
            assert parents <= set(before.chromosome_id if strategy == "tournament" else elites.chromosome_id)
            assert len(row.parents) == (2 if strategy == "crossover" else 1)


@pytest.fixture(scope="module")
def runs(ray_local, tmp_path_factory):
    """The v2 space, population 4 (2 elites), 3 generations: one run per strategy, plus dcgan seeded."""
    root = tmp_path_factory.mktemp("strategies")
    out = {}
    for strategy in ("random", "mutation", "crossover", "tournament"):
        cfg = v2_config(evolve={"generations": 3, "strategy": strategy, "tournament_size": 2},
                        space={"channels": [2, 4]}, train={"epochs": 2, "steps_per_epoch": 1})
        run_dir = root / strategy
        _evolve(cfg, run_dir)
        out[strategy] = (cfg, run_dir, logs.read_generations(run_dir))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["random", "mutation", "crossover", "tournament"])
def test_a_short_v2_run_with_each_strategy_logs_its_lineage(runs, strategy):
    cfg, run_dir, df = runs[strategy]
    assert df.groupby("generation").size().to_dict() == {0: 4, 1: 4, 2: 4}
    assert set(df.columns) == set(logs.SCHEMA.names) | {"generation"} and (df.schema_version == logs.SCHEMA_VERSION).all()
    assert (df.status == "ok").all() and df.fitness.between(0, 1).all() and (df.space == "v2").all()
    for row in df.itertuples():
        ch = registry.from_json(row.chromosome)
        assert isinstance(ch, V2Chromosome) and ch.id == row.chromosome_id and row.loss == ch.loss
        assert (row.g_optimiser, row.g_lr, row.d_optimiser, row.d_momentum) == (
            ch.g_opt.name, ch.g_opt.lr, ch.d_opt.name, ch.d_opt.momentum)
        assert (row.params_g, row.params_d) == registry.param_counts(ch)
    _assert_lineage(df, strategy, 2)
    # the state file carries the next population's parents and operators, so that --resume continues the lineage;
    # drawn again from generation 2's logged rows (as --resume draws a damaged generation's), it is the same
    saved = load_state(run_dir)
    assert saved.completed == 3 and saved.population == drawn(cfg, run_dir, 3)
    assert sum(m.operator == "elite" for m in saved.population) == config.elite_count(cfg.evolve)
    assert all(m.parents for m in saved.population if m.operator != "random")


@pytest.mark.slow
def test_the_same_seed_breeds_the_same_run(runs, tmp_path):
    cfg, _, first = runs["crossover"]
    _evolve(cfg, tmp_path / "again")
    again = logs.read_generations(tmp_path / "again")
    key = ["generation", "chromosome_id"]
    a, b = first.sort_values(key).reset_index(drop=True), again.sort_values(key).reset_index(drop=True)
    for col in ("chromosome_id", "operator", "task_seed", "d_loss", "fitness"):
        assert a[col].tolist() == b[col].tolist(), col
    assert a.parents.map(list).tolist() == b.parents.map(list).tolist()


@pytest.mark.slow
def test_dcgan_seeds_the_first_population(ray_local, tmp_path):
    cfg = v2_config(evolve={"generations": 1, "seed_chromosomes": ["dcgan"]}, train={"epochs": 2, "steps_per_epoch": 1})
    _evolve(cfg, tmp_path / "seeded")
    df = logs.read_generations(tmp_path / "seeded")
    seed = df[df.operator == "seed"]
    assert len(df) == 4 and len(seed) == 1 and seed.status.iloc[0] == "ok"
    assert registry.from_json(seed.chromosome.iloc[0]) == v2.dcgan(12, 3, batch_size=32)
    # the other three are the random members a run without the seed draws first
    plain = population.fresh_members(cfg, 0, 3)
    assert set(df[df.operator == "random"].chromosome_id) == {m.chromosome.id for m in plain}


@pytest.mark.slow
def test_elites_keep_their_weights_and_a_resumed_run_keeps_them_too(ray_local, tmp_path):
    """keep_weights: an elite starts where it ended. The weights go to RUN_DIR/weights/generation=NNNN/, so a run
    resumed from its state file continues exactly as one that was never stopped."""
    cfg = v2_config(evolve={"generations": 3, "strategy": "mutation", "keep_weights": True},
                    space={"channels": [2, 4]}, train={"epochs": 2, "steps_per_epoch": 1})
    whole = tmp_path / "whole"
    _evolve(cfg, whole)
    df = logs.read_generations(whole)
    for g in (1, 2):
        elites = df[(df.generation == g) & df.is_elite]
        for i in elites.chromosome_id:
            assert (whole / "weights" / f"generation={g:04d}" / f"{i}.pt").is_file()
    # generation 0's best is an elite of generation 1, and starts it from the weights it was saved with
    best = df[df.generation == 0].sort_values(["fitness", "chromosome_id"], ascending=[False, True]).iloc[0]
    assert (whole / "weights" / "generation=0001" / f"{best.chromosome_id}.pt").read_bytes() == \
        (whole / "best" / "generation=0000" / "weights.pt").read_bytes()
    # without keep_weights the same elites train from fresh weights: other losses
    fresh = tmp_path / "fresh"
    _evolve(replace(cfg, evolve=replace(cfg.evolve, keep_weights=False)), fresh)
    other = logs.read_generations(fresh)
    g1 = df[(df.generation == 1) & df.is_elite].set_index("chromosome_id").d_loss
    assert (other[(other.generation == 1) & other.is_elite].set_index("chromosome_id").d_loss.loc[g1.index] != g1).all()
    # stopped after two generations, resumed from the state file for the third
    part = tmp_path / "part"
    _evolve(replace(cfg, evolve=replace(cfg.evolve, generations=2)), part)
    _evolve(cfg, part, state=load_state(part))
    resumed = logs.read_generations(part)
    key = ["generation", "chromosome_id"]
    a, b = df.sort_values(key).reset_index(drop=True), resumed.sort_values(key).reset_index(drop=True)
    for col in ("chromosome_id", "operator", "task_seed", "d_loss", "g_loss", "fitness"):
        assert a[col].tolist() == b[col].tolist(), col


# ---------------------------------------------------------------------------------------------------------
# files written before parents and operators existed


def test_an_old_state_file_loads_with_the_reference_lineage(tmp_path):
    cfg = config.load("demo")
    pop0 = population.fresh_members(cfg, 0, 3)
    pop1 = (pop0[0], *population.fresh_members(cfg, 1, 2))
    doc = {"seed": 0, "completed": 1, "generations": [
        {"generation": g, "elite_ids": [], "population": [
            {"chromosome": m.chromosome.to_json(), "born_generation": m.born_generation, "resampled": m.resampled}
            for m in pop]} for g, pop in enumerate((pop0, pop1))]}
    (tmp_path / "state.json").write_text(json.dumps(doc))
    state = load_state(tmp_path)  # generation 1's population: the one to train next
    assert state.completed == 1
    assert [m.operator for m in state.population] == ["elite", "random", "random"]
    assert state.population[0].parents == (pop0[0].chromosome.id,) and state.population[1].parents == ()
    assert state.population[0].chromosome == pop0[0].chromosome


def test_an_old_schema_generation_reads_with_nulls_in_the_new_columns(tmp_path):
    cfg = config.load("demo")
    m = population.fresh_members(cfg, 0, 1)[0]
    row = logs.row("r", 1, m, 1, None, Evaluation("ok", "", 0.5))
    logs.write_generation(tmp_path, 1, [row])
    new_columns = ["parents", "operator", "space", "loss", "g_optimiser", "d_optimiser", "generation"]
    old = pa.Table.from_pylist([{**row, "schema_version": 1}], schema=logs.SCHEMA).drop_columns(new_columns)
    rundir.generation_dir(tmp_path, 0).mkdir(parents=True)
    pq.write_table(old, rundir.generation_dir(tmp_path, 0) / "part-0.parquet")
    df = logs.read_generations(tmp_path)
    assert df.generation.tolist() == [0, 1] and df.schema_version.tolist() == [1, logs.SCHEMA_VERSION]
    assert df.operator.isna().tolist() == [True, False] and df.loss.tolist()[1] == "bce" and pd.isna(df.loss[0])
