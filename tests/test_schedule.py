"""The cost estimate, dispatch order and steady-state mode: real training, a real local Ray, real Parquet."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from neuroevo import config
from neuroevo.evolve import population
from neuroevo.evolve.population import Member
from neuroevo.execution import dispatch, loop, outputs
from neuroevo.space import registry
from neuroevo.space.chromosome import Chromosome
from neuroevo.store import logs, rundir
from neuroevo.store.state import RunState
from neuroevo.store.state import load as load_state
from neuroevo.train import data, flops, losses, trainer
from neuroevo.train.model import build, noise
from tests.conftest import tiny_config, tiny_dict

# a space whose chromosomes differ in cost by about 30x
WIDE = {"channels": [4, 64], "d_blocks": [1, 2], "g_blocks": [1, 5], "d_hidden": [30, 200], "max_params": 10**7}


def _sample(cfg, n, seed=0):
    rng = np.random.default_rng(seed)
    return [registry.sample(cfg.space, cfg.data.image_size, cfg.data.channels, rng)[0] for _ in range(n)]


def test_step_flops_equal_torchs_flop_count_of_a_real_step():
    cfg = tiny_config(space=WIDE)
    for ch in _sample(cfg, 5):
        G, D = build(ch)
        bs = 4
        real = torch.rand(bs, 3, 12, 12) * 2 - 1
        with FlopCounterMode(display=False) as counter:
            fake = G(noise(ch, bs))
            (losses.bce(D(real)[1], torch.ones(bs)) + losses.bce(D(fake.detach())[1], torch.zeros(bs))).backward()
            losses.bce(D(fake)[1], torch.ones(bs)).backward()
        assert flops.step_flops(ch) * bs == counter.get_total_flops()


def test_cost_counts_the_images_and_epochs_a_training_sees():
    cfg = tiny_config()
    ch = _sample(cfg, 1)[0]
    per_image = flops.step_flops(ch)
    assert flops.cost(ch, cfg.train, 128) == per_image * 2 * 32  # steps_per_epoch 2 of 4 possible, batch 32
    uncapped = replace(cfg.train, steps_per_epoch=None, epochs=3)
    assert flops.cost(ch, uncapped, 100) == per_image * 96 * 3  # 3 whole batches; the partial one is dropped
    assert flops.cost(ch, cfg.train) == flops.cost(ch, cfg.train, 10**6)


def test_cost_orders_chromosomes_as_their_measured_cpu_step_time():
    cfg = tiny_config(data={"image_size": 16, "subset": 256}, space={**WIDE, "d_blocks": [1, 3]},
                      train={"epochs": 1, "steps_per_epoch": 6})
    images = data.load(cfg.data, 0).array
    chromosomes = _sample(cfg, 10, seed=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray task with num_cpus=1 trains
    try:
        measured = [min(trainer.train(ch, images, cfg.train, seed=0)[0].train_seconds for _ in range(3))
                    for ch in chromosomes]
    finally:
        torch.set_num_threads(threads)
    estimated = [flops.cost(ch, cfg.train, len(images)) for ch in chromosomes]
    assert max(estimated) / min(estimated) > 10
    rho = pd.DataFrame({"estimated": estimated, "measured": measured}).corr(method="spearman").iloc[0, 1]
    assert rho >= 0.75, (rho, estimated, measured)


def test_dispatch_order():
    items, costs, ids = ["a", "b", "c", "d"], [1.0, 5.0, 5.0, 3.0], ["z", "y", "x", "w"]
    assert dispatch.order_tasks(items, costs, ids, "longest_first") == ["c", "b", "d", "a"]  # ties by id
    assert dispatch.order_tasks(items, costs, ids, "fifo") == items
    with pytest.raises(ValueError, match="dispatch"):
        dispatch.order_tasks(items, costs, ids, "lifo")


@pytest.mark.slow
@pytest.mark.parametrize("order", ["longest_first", "fifo"])
def test_tasks_start_in_dispatch_order(ray_local, tmp_path, order):
    """One task at a time (each takes both CPUs), so the start order is the dispatch order."""
    cfg = tiny_config(space=WIDE, evolve={"population": 5, "generations": 1, "dispatch": order},
                      resources={"num_cpus": 2})
    members = population.fresh_members(cfg, 0, 5)
    images = data.load(cfg.data, cfg.seed).array
    df = pd.DataFrame(t.row for t in loop.run_generation(cfg, "r", tmp_path, 0, members, ray_local.put(images),
                                                          len(images)))
    started = df.sort_values("started_at").chromosome_id.tolist()
    if order == "fifo":
        assert started == [m.chromosome.id for m in members]
    else:
        costs = {m.chromosome.id: flops.cost(m.chromosome, cfg.train, len(images)) for m in members}
        assert started == sorted(costs, key=lambda i: -costs[i])


# ---------------------------------------------------------------------------------------------------------
# steady-state mode


def _heavy(ch: Chromosome, channels: int) -> Chromosome:
    """The same chromosome with every block `channels` wide: many times its cost."""
    widen = lambda blocks: tuple(replace(b, channels=channels) for b in blocks)  # noqa: E731
    return replace(ch, g_blocks=widen(ch.g_blocks), d_blocks=widen(ch.d_blocks), d_hidden=200)


@pytest.fixture(scope="module")
def both_modes(ray_local, tmp_path_factory):
    """Three generations from a first population with one chromosome far costlier than the others."""
    out = {}
    for mode in ("generational", "steady_state"):
        cfg = tiny_config(evolve={"population": 4, "generations": 3, "elite_fraction": 0.5, "mode": mode},
                          train={"epochs": 1, "steps_per_epoch": 4})
        first = list(population.fresh_members(cfg, 0, 4))
        first[0] = Member(_heavy(first[0].chromosome, 96), 0, 0)
        run_dir = tmp_path_factory.mktemp(mode)
        loop.evolve(cfg, mode, run_dir, data.load(cfg.data, cfg.seed).array, RunState(tuple(first), 0))
        out[mode] = (cfg, logs.read_generations(run_dir))
    return out


@pytest.mark.slow
def test_steady_state_logs_n_rows_per_generation_with_the_same_schema(both_modes):
    cfg, df = both_modes["steady_state"]
    assert df.groupby("generation").size().to_dict() == {0: 4, 1: 4, 2: 4}
    assert set(df.columns) == set(logs.SCHEMA.names) | {"generation"}
    assert (df.status == "ok").all()


@pytest.mark.slow
def test_steady_state_trains_the_same_chromosomes_with_the_same_results(both_modes):
    key = ["generation", "chromosome_id"]
    a = both_modes["generational"][1].sort_values(key).reset_index(drop=True)
    b = both_modes["steady_state"][1].sort_values(key).reset_index(drop=True)
    for col in ("generation", "chromosome_id", "is_elite", "born_generation", "task_seed", "d_loss", "g_loss",
                "fitness"):
        assert a[col].tolist() == b[col].tolist(), col


@pytest.mark.slow
def test_steady_state_starts_the_next_generation_before_a_slow_one_ends(both_modes):
    for mode, expect_overlap in (("generational", False), ("steady_state", True)):
        _, df = both_modes[mode]
        slowest = df[df.generation == 0].sort_values("train_seconds").iloc[-1]
        early = df[(df.generation == 1) & (df.started_at < slowest.finished_at)]
        assert (len(early) > 0) == expect_overlap, mode
        if expect_overlap:
            assert not early.is_elite.any()  # elites wait for their generation's fitness


@pytest.mark.slow
def test_early_starts_that_selection_did_not_choose_are_discarded(ray_local, tmp_path, capsys):
    cfg = tiny_config(evolve={"population": 4, "generations": 2, "mode": "steady_state"})
    images = data.load(cfg.data, cfg.seed).array
    runner = dispatch.SteadyState(cfg, "r", tmp_path, ray_local.put(images), len(images))
    loop.run_generation(cfg, "r", tmp_path, 0, population.fresh_members(cfg, 0, 4), runner.images_ref,
                        runner=runner)  # the second slot starts generation 1 early
    assert runner.started.get(1)
    other = tuple(Member(m.chromosome, 1, 0) for m in population.fresh_members(replace(cfg, seed=99), 1, 4))
    df = pd.DataFrame(t.row for t in loop.run_generation(cfg, "r", tmp_path, 1, other, runner.images_ref, runner=runner))
    assert sorted(df.chromosome_id) == sorted(m.chromosome.id for m in other)
    assert "started early are not in generation 1" in capsys.readouterr().err
    assert not runner.running and not runner.queued


@pytest.mark.slow
def test_a_killed_steady_state_run_resumes_to_the_generational_history(ray_local, tmp_path):
    generations = 3
    cfg_dict = tiny_dict(evolve={"generations": generations, "mode": "steady_state"},  # about a second a generation
                         data={"subset": 512}, train={"steps_per_epoch": None})
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg_dict))
    generational = config.from_dict({**cfg_dict, "evolve": {**cfg_dict["evolve"], "mode": "generational"}})
    (tmp_path / "whole").mkdir()
    loop.evolve(generational, "whole", tmp_path / "whole", data.load(generational.data, 0).array)

    run_dir = tmp_path / "runs" / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "neuroevo", "run", "tiny.yaml", "--set", "out_dir=runs",
                             "--set", "run_id=killed"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not rundir.generation_dir(run_dir, 0).exists():
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray, as a dead host would end them
    proc.wait()
    assert load_state(run_dir).completed < generations
    p = subprocess.run([sys.executable, "-m", "neuroevo", "run", "--resume", "runs/killed"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "resuming at generation" in p.stdout
    key = ["generation", "chromosome_id"]
    a = logs.read_generations(tmp_path / "whole").sort_values(key).reset_index(drop=True)
    b = logs.read_generations(run_dir).sort_values(key).reset_index(drop=True)
    assert len(b) == 4 * generations
    for col in ("generation", "chromosome_id", "is_elite", "task_seed", "fitness"):
        assert a[col].tolist() == b[col].tolist(), col


def test_v2_step_flops_match_torchs_count_of_the_convolutions_and_fc_layers():
    """v2 layers (strides, skips, pooling, FC): the convolutions and FC layers, exactly as torch counts them."""
    cfg = config.load("v2", ["data.image_size=16", "space.channels=[4, 12]", "space.fc_units=[8, 32]",
                             "space.max_flatten=4096"])
    rng = np.random.default_rng(0)
    for _ in range(20):
        ch, _ = registry.sample(cfg.space, 16, 3, rng)
        G, D = build(ch)
        with FlopCounterMode(display=False) as counter:
            G(noise(ch, 2)), D(torch.rand(2, 3, 16, 16))  # two images: BatchNorm1d needs more than one
        g, d = flops.layer_flops(ch)
        assert 2 * (sum(g) + sum(d)) == counter.get_total_flops()  # forward only, for two images
        assert flops.cost(ch, cfg.train, 1024) > 0


def test_v2_step_flops_equal_torchs_flop_count_of_a_real_step():
    """The whole DCGAN step of v2 chromosomes (strides, skips, pooling, FC layers), as train.train takes it, for the
    losses whose step is the estimate's: a D step on a real and a fake batch, then a G step."""
    cfg = config.load("v2", ["data.image_size=16", "space.channels=[4, 12]", "space.fc_units=[8, 32]",
                             "space.max_flatten=4096", "space.losses=[bce, hinge]", "space.feature_matching=[false]",
                             "space.separate_batches=[true]", "space.label_smoothing=[false]"])
    rng = np.random.default_rng(1)
    for _ in range(20):
        ch, _ = registry.sample(cfg.space, 16, 3, rng)
        G, D = build(ch)
        objective = losses.objective(ch)
        bs = 4
        real = torch.rand(bs, 3, 16, 16) * 2 - 1
        with FlopCounterMode(display=False) as counter:
            fake = G(noise(ch, bs))
            objective.d_loss(D, real, fake.detach()).backward()
            objective.g_loss(D, real, fake).backward()
        assert flops.step_flops(ch) * bs == counter.get_total_flops()


# ---------------------------------------------------------------------------------------------------------
# the weights the driver holds while a generation comes in


def _weights_held(monkeypatch) -> tuple[dict, list]:
    """Watch a run: the ids of each generation's weights objects (as submitted), and at each write_generation, how
    many of that generation's are still referenced in the driver (what keeps them in the object store)."""
    submitted: dict[int, list[bytes]] = {}
    held: list[int] = []
    submit, log = dispatch._submit, outputs.write_generation

    def watched_submit(cfg, generation, *args, **kwargs):
        report_ref, task = submit(cfg, generation, *args, **kwargs)
        submitted.setdefault(generation, []).append(task.weights.hex().encode())  # the id only: no ref kept
        return report_ref, task

    def watched_log(cfg, run_dir, generation, trained, cap):
        held.append(_referenced(submitted[generation]))
        return log(cfg, run_dir, generation, trained, cap)

    monkeypatch.setattr(dispatch, "_submit", watched_submit)
    monkeypatch.setattr(outputs, "write_generation", watched_log)
    return submitted, held


def _referenced(ids: list[bytes]) -> int:
    import ray
    counts = ray._private.worker.global_worker.core_worker.get_all_reference_counts()
    return sum(1 for i in ids if counts.get(i, {}).get("local", 0) > 0)


@pytest.mark.parametrize("mode, keys, held_at_log", [
    ("generational", {}, 1),  # the best's
    ("steady_state", {"evolve.keep_weights": True}, 2),  # the two elites'
    ("generational", {"train.keep": "all"}, 6),  # every one's, all written
])
@pytest.mark.slow
def test_the_driver_holds_only_the_weights_it_may_still_write(ray_local, tmp_path, monkeypatch, mode, keys,
                                                             held_at_log):
    cfg = config.from_dict(tiny_dict(evolve={"population": 6, "generations": 2, "elite_fraction": 0.34,
                                             "mode": mode}, train={"epochs": 1, "steps_per_epoch": 1}))
    for key, value in keys.items():
        section, name = key.split(".")
        cfg = replace(cfg, **{section: replace(getattr(cfg, section), **{name: value})})
    submitted, held = _weights_held(monkeypatch)
    loop.evolve(cfg, mode, tmp_path, data.load(cfg.data, cfg.seed).array)
    df = logs.read_generations(tmp_path)
    assert (df.status == "ok").all() and held == [held_at_log] * 2
    assert _referenced([i for ids in submitted.values() for i in ids]) == 0  # none left once the run is over
    for g, rows in df.groupby("generation"):
        assert rundir.best_weights(tmp_path, g).is_file() and rundir.best_samples(tmp_path, g).is_file()
        if cfg.evolve.keep_weights:
            elites = rows.sort_values(["fitness", "chromosome_id"], ascending=[False, True]).chromosome_id[:2]
            assert all(rundir.weights_file(tmp_path, g + 1, i).is_file() for i in elites)
        if cfg.train.keep == "all":
            assert all(rundir.generator_file(tmp_path, g, i).is_file() for i in rows.chromosome_id)


@pytest.mark.slow
def test_held_weights_are_the_fittest_whatever_order_the_tasks_finish_in(ray_local):
    """Finished with 2 places: whatever the arrival order, the 2 fittest (ties by id) and any tied with the
    second keep their weights (here the second and third are the same chromosome); a failed member holds none."""
    import itertools

    from neuroevo.evolve.fitness import Evaluation
    cfg = tiny_config()
    members = population.fresh_members(cfg, 0, 4)
    twin = Member(members[1].chromosome, 1, 0)  # the same chromosome: equal on every key of the ranking
    fit = {members[0]: 0.8, members[1]: 0.7, twin: 0.7, members[2]: 0.2, members[3]: 0.9}
    ref = ray_local.put(b"weights")

    def trained(m: Member) -> dispatch.Trained:
        ok = m is not members[3]  # the fittest figure, but it failed
        return dispatch.Trained("r", 0, m, 0, None, ("", ""), ref if ok else None,
                                Evaluation("ok" if ok else "failed", "", fit[m]))

    for arrival in itertools.permutations(fit):
        done = dispatch.Finished(2)
        for m in arrival:
            done.add(trained(m))
        assert {m for m, t in done.trained.items() if t.weights is not None} == {members[0], members[1], twin}
    done = dispatch.Finished(None)
    for m in fit:
        done.add(trained(m))
    assert sum(t.weights is not None for t in done.trained.values()) == 4
