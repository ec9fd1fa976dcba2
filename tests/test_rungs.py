"""Successive halving within a generation: a training paused and continued exactly (continuation.py), the rung
schedule (rungs.py), ranking across rungs, and a run with rungs end to end."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from neuroevo.space import v2
from neuroevo.space.genes import Optimiser
from neuroevo.store import logs
from neuroevo.train import continuation, data, trainer
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def setup():
    cfg = tiny_config(train={"epochs": 3, "steps_per_epoch": 3})
    images = data.load(cfg.data, seed=0).array
    # Adam for G, SGD with momentum and a step decay for D: every optimiser and schedule state is carried over
    ch = dataclasses.replace(v2.dcgan(12, 3, batch_size=16, width=4, noise_dim=4),
                             d_opt=Optimiser("sgd", 1e-3, 0.9, decay_epoch=1, decay_factor=0.5))
    return cfg, images, ch


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _recipe(ch):
    """The chromosome with the modern recipe: a G step every 2 D steps, an EMA of G, DiffAugment (its own random
    stream), R1 (a double backward) and spectral norm on D."""
    return dataclasses.replace(ch, n_critic=2, g_ema=0.9, augment="color,translation,cutout", r1_gamma=1.0,
                               spectral_norm="d")


@pytest.mark.parametrize("recipe", [False, True], ids=["dcgan", "recipe"])
@pytest.mark.parametrize("r, eta", [(2, 3), (3, 2), (1, 8)])  # within an epoch, on its boundary, to the end
def test_legs_of_r_then_eta_r_steps_train_as_one_training(setup, r, eta, recipe):
    cfg, images, ch = setup
    ch = _recipe(ch) if recipe else ch
    total = r + eta * r
    one, G1, D1, E1, _ = trainer.train_leg(ch, images, cfg.train, seed=3, flip=True, until=total)
    first, _, _, _, pause = trainer.train_leg(ch, images, cfg.train, seed=3, flip=True, until=r)
    assert first.steps == r and continuation.steps_done(pause) == r
    second, G2, D2, E2, _ = trainer.train_leg(ch, images, cfg.train, seed=3, flip=True, until=total, resume=pause)
    assert one.steps == second.steps == total
    assert (one.d_steps, one.g_steps) == (second.d_steps, second.g_steps) == (total, total // ch.recipe.n_critic)
    assert (one.d_losses, one.g_losses) == (second.d_losses, second.g_losses)
    assert _same_weights(G1, G2) and _same_weights(D1, D2)
    assert (E1 is None) == (E2 is None) == (not recipe)
    if recipe:  # the average of G's weights too, its BatchNorm statistics measured afresh at the pause
        assert _same_weights(E1, E2) and not _same_weights(E1, G1)


def test_a_training_continued_to_its_end_is_the_whole_training(setup):
    cfg, images, ch = setup
    whole, G1, D1, _ = trainer.train(ch, images, cfg.train, seed=4)
    pause = None
    for until in (1, 4, None):
        result, G2, D2, _, pause = trainer.train_leg(ch, images, cfg.train, seed=4, until=until, resume=pause)
    assert pause is None and result.steps == whole.steps == 9
    assert (result.d_losses, result.g_losses, result.d_loss) == (whole.d_losses, whole.g_losses, whole.d_loss)
    assert _same_weights(G1, G2) and _same_weights(D1, D2)


def test_a_paused_training_reports_its_partial_epoch(setup):
    cfg, images, ch = setup
    result, _, _, _, pause = trainer.train_leg(ch, images, cfg.train, seed=3, until=4)
    assert len(result.d_losses) == 2 and result.d_loss == result.d_losses[-1]  # epoch 0, then 1 step of epoch 1
    state = continuation.from_bytes(pause)  # plain data and tensors: weights_only reads it
    assert (state["epoch"], state["step"], state["done"]) == (1, 1, 1)


# --- the rung schedule and the ranking across rungs ------------------------------------------------------------


def test_the_last_rung_trains_to_the_end_and_each_rung_eta_times_the_one_before():
    from neuroevo.execution.rungs import promoted, rung_steps

    assert rung_steps(27, 3, 3) == (3, 9, 27)
    assert rung_steps(20, 2, 3) == (7, 20)  # rounded up
    assert rung_steps(2, 3, 3) == (1, 1, 2)  # never 0 steps
    assert rung_steps(9, 1, 3) == (9,)  # one rung: the whole training
    assert [promoted(n, 3) for n in (9, 10, 3, 2, 1)] == [3, 4, 1, 1, 1]


def test_a_higher_rung_ranks_first_whatever_the_fitness():
    from neuroevo.evolve import ranking, selection

    fitness, rung, ids = [0.9, 0.2, 0.5, 0.8], [0, 2, 1, 1], ["a", "b", "c", "d"]
    assert list(ranking.order(fitness, chromosome_id=ids, rung=rung)) == [1, 3, 2, 0]
    assert list(ranking.order(fitness, chromosome_id=ids)) == [0, 3, 2, 1]  # without rungs: fitness alone
    # a training that failed counts as rung 0, below those stopped earlier that trained
    key = ranking.rung_key(rung, ["ok", "failed", "ok", "ok"])
    assert key == [0, 0, 1, 1] and list(ranking.order(fitness, chromosome_id=ids, rung=key)) == [3, 2, 0, 1]
    assert ranking.rung_key(None, ["ok"]) is None and ranking.rung_key([float("nan")], ["ok"]) == [0]
    # selection reads the same rule
    assert selection.elites(ids, fitness, ids, 2, rung=rung) == ["b", "d"]


def test_rungs_are_checked_against_what_they_cannot_do():
    from neuroevo.errors import ConfigError

    with pytest.raises(ConfigError, match="evolve.rungs"):
        tiny_config(evolve={"rungs": 2, "mode": "steady_state"})
    with pytest.raises(ConfigError, match="evolve.rungs"):
        tiny_config(evolve={"rungs": 2}, fitness={"kind": "pareto"}, quality={"evaluate": "all"})
    assert tiny_config().evolve.rungs == 1 and tiny_config().evolve.eta == 3


# --- a real tiny run in rungs ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_each_rung_is_a_wave_of_the_fittest_1_over_eta(ray_local, tmp_path):
    import ray

    from neuroevo.evolve import population
    from neuroevo.execution import loop, rungs

    cfg = tiny_config(evolve={"population": 7, "rungs": 3, "eta": 2},
                      train={"epochs": 2, "steps_per_epoch": 2})  # 4 steps: rungs of 1, 2 and 4
    images = data.load(cfg.data, seed=0).array
    runner = rungs.Rungs(cfg, "r", tmp_path, ray.put(images), len(images))
    members = population.initial_population(cfg)
    trained = loop.run_generation(cfg, "r", tmp_path, 0, members, runner.images_ref, len(images), runner=runner)
    assert runner.tasks == [7, 4, 2]  # N, ceil(N / eta), ceil(ceil(N / eta) / eta)
    ok = [t for t in trained if t.evaluation.status == "ok"]
    assert len(ok) == 7
    reached = sorted((t.rung, t.report.result.steps) for t in trained)
    assert reached == [(0, 1)] * 3 + [(1, 2)] * 2 + [(2, 4)] * 2
    # those promoted were the fittest of their rung; the row of each is that of the last rung it trained in
    rows = [t.row for t in trained]
    assert [r["rung"] for r in rows] == [t.rung for t in trained] and all(r["steps"] for r in rows)
    best = ranking_best(rows)
    assert best["rung"] == 2 and (tmp_path / "best").exists()


def ranking_best(rows):
    from neuroevo.evolve import ranking

    return rows[ranking.order([r["fitness"] for r in rows], chromosome_id=[r["chromosome_id"] for r in rows],
                              rung=ranking.rung_key([r["rung"] for r in rows], [r["status"] for r in rows]))[0]]


@pytest.mark.slow
def test_a_run_in_rungs_logs_one_row_per_chromosome_and_every_command_reads_it(tmp_path):
    import json

    from tests.conftest import neuroevo, plain

    sets = ["data.image_size=16", "data.subset=128", "train.epochs=2", "train.steps_per_epoch=2",
            "train.sample_grid=4", "evolve.population=5", "evolve.generations=2", "evolve.elite_fraction=0.4",
            "evolve.rungs=2", "evolve.eta=2", "evolve.budget=1e12", "resources.num_cpus=1", "resources.num_gpus=0",
            "tracking.tensorboard=false", "space.channels=[4,8]", "space.g_blocks=[1,3]", "space.d_blocks=[1,2]",
            "space.d_hidden=[16,32]", "space.batch_size=32", "space.max_params=200000",
            f"out_dir={tmp_path / 'runs'}", "run_id=rungs"]
    p = neuroevo("run", "demo", "--quiet", *[a for s in sets for a in ("--set", s)], cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("budget: generation") == 2
    run_dir = tmp_path / "runs" / "rungs"
    rows = plain(run_dir)
    assert len(rows) == 10 and set(rows["schema_version"]) == {logs.SCHEMA_VERSION}
    for _, gen in rows.groupby("generation"):  # 5 in rung 0, the fittest 3 on to rung 1 (4 steps, the end)
        assert sorted(gen["rung"]) == [0, 0, 1, 1, 1]
        assert set(gen[gen.rung == 1]["steps"]) == {4} and set(gen[gen.rung == 0]["steps"]) == {2}

    p = neuroevo("best", run_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    ok = rows[(rows.status == "ok") & (rows.rung == 1)]  # the fittest of the last rung, not of all
    want = ok.sort_values(["fitness", "generation", "chromosome_id"], ascending=[False, True, True]).iloc[0]
    assert want.chromosome_id in p.stdout.splitlines()[0]
    p = neuroevo("report", run_dir, "--out", tmp_path / "rep")
    assert p.returncode == 0 and (tmp_path / "rep" / "report.html").is_file(), p.stderr[-3000:]
    p = neuroevo("query", run_dir, "--columns", "generation,chromosome_id,rung,steps,fitness", "--format", "json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert sorted(r["rung"] for r in json.loads(p.stdout)) == sorted(rows["rung"])


@pytest.mark.slow
def test_a_rung_over_the_budget_is_not_started(ray_local, tmp_path, capsys):
    import ray

    from neuroevo.evolve import population
    from neuroevo.execution import loop, rungs

    cfg = tiny_config(evolve={"population": 4, "rungs": 2, "eta": 2, "budget": 1.0})  # less than rung 0 costs
    images = data.load(cfg.data, seed=0).array
    runner = rungs.Rungs(cfg, "b", tmp_path, ray.put(images), len(images))
    trained = loop.run_generation(cfg, "b", tmp_path, 0, population.initial_population(cfg), runner.images_ref,
                                  len(images), runner=runner)
    assert runner.tasks == [4] and [t.rung for t in trained] == [0] * 4  # rung 0 always trains
    assert "budget: generation 0 spent" in capsys.readouterr().out
