"""The driver on a real local Ray instance: tiny GANs, real training, real Parquet."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from PIL import Image

from neuroevo.evolve import population
from neuroevo.execution import dispatch, loop
from neuroevo.space import registry
from neuroevo.store import logs
from neuroevo.train import data
from tests.conftest import plain, tiny_config, tiny_dict


def _run(cfg, tmp_path, name="run"):
    run_dir = tmp_path / name
    run_dir.mkdir()
    images = data.load(cfg.data, cfg.seed).array
    state = loop.evolve(cfg, name, run_dir, images)
    return run_dir, state


@pytest.fixture(scope="module")
def two_generations(ray_local, tmp_path_factory):
    cfg = tiny_config(evolve={"population": 4, "generations": 2, "elite_fraction": 0.5})
    run_dir, state = _run(cfg, tmp_path_factory.mktemp("evolve"))
    return cfg, run_dir, state, logs.read_generations(run_dir)


@pytest.mark.slow
def test_n_rows_per_generation_with_the_schema(two_generations):
    cfg, run_dir, state, df = two_generations
    assert df.groupby("generation").size().to_dict() == {0: 4, 1: 4}
    assert set(df.columns) == set(logs.SCHEMA.names) | {"generation"}
    assert df["generation"].dtype.kind == "i"
    assert (df["status"] == "ok").all() and df["fitness"].between(0, 1).all()
    assert (df["run_id"] == "run").all() and (df["schema_version"] == logs.SCHEMA_VERSION).all()
    assert df["d_losses"].map(len).eq(cfg.train.epochs).all()
    assert state.completed == 2 and len(state.population) == 4  # generation 2's population is drawn, untrained
    # plain pandas reads the same history
    plain = pd.read_parquet(run_dir / "generations")
    assert len(plain) == 8 and set(plain["generation"].astype(int)) == {0, 1}


@pytest.mark.slow
def test_elites_are_the_fittest_and_carried_unchanged(two_generations):
    cfg, _, _, df = two_generations
    g0, g1 = df[df.generation == 0], df[df.generation == 1]
    top2 = g0.sort_values(["fitness", "chromosome_id"], ascending=[False, True]).head(2)
    elites = g1[g1.is_elite]
    assert set(elites.chromosome_id) == set(top2.chromosome_id)
    assert (elites.born_generation == 0).all()
    # the same genes, as JSON and as columns
    merged = elites.merge(top2, on="chromosome_id", suffixes=("", "_g0"))
    assert (merged.chromosome == merged.chromosome_g0).all()
    assert (merged.noise_side == merged.noise_side_g0).all()
    # retrained from fresh weights with a new seed: new losses
    assert (merged.task_seed != merged.task_seed_g0).all()
    assert (merged.d_loss != merged.d_loss_g0).all()
    # the others are new chromosomes, born this generation
    new = g1[~g1.is_elite]
    assert len(new) == 2 and (new.born_generation == 1).all()
    assert not set(new.chromosome_id) & set(g0.chromosome_id)
    assert not g0.is_elite.any()


@pytest.mark.slow
def test_rows_match_their_chromosome(two_generations):
    cfg, _, _, df = two_generations
    for row in df.itertuples():
        ch = registry.from_json(row.chromosome)
        assert ch.id == row.chromosome_id
        assert (row.params_g, row.params_d) == registry.param_counts(ch)
        assert list(row.g_kernels) == [b.kernel for b in ch.g_blocks] + [ch.g_out_kernel]
        assert row.g_lr == ch.g_lr and row.noise_side == ch.noise_side
        assert row.finished_at >= row.started_at
        assert row.node and row.device == "cpu" and list(row.gpu_ids) == []


@pytest.mark.slow
def test_best_generator_saved_each_generation(two_generations):
    cfg, run_dir, _, df = two_generations
    for g in (0, 1):
        best = df[df.generation == g].sort_values("fitness", ascending=False).iloc[0]
        out = run_dir / "best" / f"generation={g:04d}"
        assert json.loads((out / "chromosome.json").read_text()) == json.loads(best.chromosome)
        grid = Image.open(out / "samples.png")
        assert grid.format == "PNG" and grid.size[0] > cfg.data.image_size
        from neuroevo.train.checkpoint import load_generator
        ch, G = load_generator(str(out / "weights.pt"))
        assert ch.id == best.chromosome_id


@pytest.mark.slow
def test_same_seed_same_run(two_generations, tmp_path):
    """Chromosomes, task seeds and (on CPU) losses are a function of the run seed."""
    cfg, _, _, first = two_generations
    run_dir, _ = _run(cfg, tmp_path, "again")
    again = logs.read_generations(run_dir)
    key = ["generation", "chromosome_id"]
    a, b = first.sort_values(key).reset_index(drop=True), again.sort_values(key).reset_index(drop=True)
    for col in ("chromosome_id", "is_elite", "task_seed", "d_loss", "g_loss", "fitness"):
        assert a[col].tolist() == b[col].tolist(), col


def test_task_seed_depends_on_run_generation_and_chromosome():
    s = population.task_seed(0, 1, "abcdef012345")
    assert s == population.task_seed(0, 1, "abcdef012345") and 0 <= s < 2**63
    assert len({s, population.task_seed(1, 1, "abcdef012345"), population.task_seed(0, 2, "abcdef012345"),
                population.task_seed(0, 1, "abcdef012346")}) == 4


@pytest.mark.slow
def test_a_failing_task_is_logged_and_the_generation_goes_on(ray_local, tmp_path):
    """A chromosome whose training raises (here: batch larger than the data) gets a 'failed' row."""
    cfg = tiny_config(evolve={"population": 3, "generations": 1})
    pop = population.fresh_members(cfg, 0, 3)
    from dataclasses import replace
    broken = population.Member(replace(pop[0].chromosome, batch_size=10_000), 0, 0)
    images = data.load(cfg.data, cfg.seed).array
    df = pd.DataFrame(t.row for t in loop.run_generation(cfg, "r", tmp_path, 0, (broken, *pop[1:]),
                                                          ray_local.put(images)))
    assert len(df) == 3
    row = df[df.chromosome_id == broken.chromosome.id].iloc[0]
    assert row.status == "failed" and "fewer than one batch" in row.error and row.fitness == 0.0
    assert (df[df.chromosome_id != broken.chromosome.id].status == "ok").all()
    assert len(logs.read_generations(tmp_path)) == 3


@pytest.mark.slow
def test_the_driver_never_imports_torch(tmp_path):
    """A whole `neuroevo run` (Ray started, tasks trained, their results unpickled, the logs and the best written)
    leaves torch and torchvision out of the driver's process: they load in the training tasks only."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_dict(evolve={"population": 2, "generations": 1})))
    code = ("import json, sys; from neuroevo import cli; "
            f"code = cli.main(['run', {str(cfg)!r}, '--quiet', '--set', 'out_dir={tmp_path}', '--set', 'run_id=r']); "
            "print(json.dumps([code, sorted(set(sys.modules) & {'torch', 'torchvision'})]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1]) == [0, []]
    assert len(plain(tmp_path / "r")) == 2 and (tmp_path / "r" / "best" / "generation=0000" / "weights.pt").is_file()


def _counting_waits(ray_local, monkeypatch) -> list:
    """ray.wait as dispatch calls it, each call recorded."""
    calls, wait = [], ray_local.wait
    monkeypatch.setattr(dispatch.ray, "wait", lambda *a, **k: calls.append(len(a[0])) or wait(*a, **k))
    return calls


@pytest.mark.slow
def test_the_gather_waits_once_per_batch_not_once_per_task(ray_local, monkeypatch):
    """200 trivial tasks, 100 of them submitted while the first are handed out: each handed out once, with far
    fewer ray.wait calls than tasks (one at a time over the list it would be 200)."""
    echo = ray_local.remote(lambda i: i)
    pending = {echo.remote(i): i for i in range(100)}
    calls = _counting_waits(ray_local, monkeypatch)
    handed = []
    for ref in dispatch.finished(pending):
        handed.append(pending.pop(ref))
        if len(handed) == 50:
            pending.update({echo.remote(i): i for i in range(100, 200)})
    assert sorted(handed) == list(range(200)) and not pending
    assert 1 <= len(calls) <= 200 / 4, calls


@pytest.mark.slow
def test_tasks_finished_together_are_handed_out_in_submission_order_in_one_round(ray_local, monkeypatch):
    echo = ray_local.remote(lambda i: i)
    pending = {echo.remote(i): i for i in range(50)}
    ray_local.get(list(pending))
    calls = _counting_waits(ray_local, monkeypatch)
    assert [pending.pop(ref) for ref in dispatch.finished(pending)] == list(range(50))
    assert calls == [50, 50]
