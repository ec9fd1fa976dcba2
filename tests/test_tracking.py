"""Experiment tracking read back as a user's tools read it: TensorBoard's own EventAccumulator and MLflow's client,
compared with the Parquet logs, on a real tiny run, its resume after a driver died mid-report, and the config's
errors."""

import dataclasses
import json
import shutil
import subprocess
import sys

import pytest

from neuroevo import config, errors
from neuroevo.execution import loop
from neuroevo.store import logs, resume, rundir, tracking
from neuroevo.store.state import load as load_state
from neuroevo.train import data
from tests.conftest import tiny_config

EventAccumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator").EventAccumulator
mlflow = pytest.importorskip("mlflow")


def _config(generations):
    return tiny_config(evolve={"population": 3, "generations": generations, "elite_fraction": 0.34},
                       tracking={"mlflow": True, "mlflow_experiment": "tiny"})


@pytest.fixture(scope="module")
def tracked(ray_local, tmp_path_factory):
    """Two generations tracked; then the driver 'dies' after logging generation 1 and sending it, before
    tracking.json notes it, and a resume extends the run to three generations."""
    tmp = tmp_path_factory.mktemp("tracking")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", (tmp / "mlruns").as_uri())
        env.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3's file store, local and needing no server
        run_dir = tmp / "run"
        run_dir.mkdir()
        cfg = _config(2)
        rundir.write(rundir.config_file(run_dir), config.to_yaml(cfg))
        images = data.load(cfg.data, cfg.seed).array
        loop.evolve(cfg, "run", run_dir, images)
        progress = json.loads(rundir.tracking_file(run_dir).read_text())
        assert progress["tensorboard"] == progress["mlflow"] == 1
        rundir.write(rundir.tracking_file(run_dir), json.dumps({**progress, "tensorboard": 0, "mlflow": 0}))
        loop.evolve(_config(3), "run", run_dir, images, load_state(run_dir))
        yield run_dir, mlflow.MlflowClient(), progress["mlflow_run_id"]


def _scalars(folder, tag):
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


@pytest.mark.slow
def test_tensorboard_holds_each_generation_once_as_the_logs_have_it(tracked):
    run_dir, _, _ = tracked
    df = logs.read_generations(run_dir)
    per_generation = df.groupby("generation").fitness
    board = rundir.tensorboard_dir(run_dir)
    for tag, expected in [("best_fitness", per_generation.max()), ("mean_fitness", per_generation.mean()),
                          ("worst_fitness", per_generation.min()),
                          ("failed", df.assign(f=df.status != "ok").groupby("generation").f.sum())]:
        points = _scalars(board, f"generation/{tag}")
        assert [s for s, _ in points] == [0, 1, 2], tag  # generation 1, sent twice, shows once
        assert [v for _, v in points] == pytest.approx(list(expected), rel=1e-6), tag  # float32 in the files
    # the wall time of the generations each driver trained; generation 1, sent again from the logs, has none
    assert [s for s, _ in _scalars(board, "generation/seconds")] == [0, 2]
    assert _scalars(board, "generation/best_fid") == []  # not measured in this run


@pytest.mark.slow
def test_each_chromosome_is_one_hparams_session_with_its_rows(tracked):
    run_dir, _, _ = tracked
    df = logs.read_generations(run_dir)
    sessions = rundir.tensorboard_dir(run_dir) / "chromosomes"
    assert sorted(p.name for p in sessions.iterdir()) == sorted(df.chromosome_id.unique())
    for chromosome_id, rows in df.groupby("chromosome_id"):
        folder = sessions / chromosome_id
        for column in ("fitness", "d_loss", "g_loss", "params_g"):
            points = _scalars(folder, f"chromosome/{column}")
            assert [s for s, _ in points] == list(rows.generation), (chromosome_id, column)
            assert [v for _, v in points] == pytest.approx(list(rows[column]), rel=1e-6)
        acc = EventAccumulator(str(folder))
        acc.Reload()
        assert "_hparams_/session_start_info" in acc.summary_metadata  # its genes, for the HParams dashboard


@pytest.mark.slow
def test_a_large_population_has_hparams_sessions_for_each_generations_fittest_only(tracked, tmp_path):
    """100 chromosomes a generation: an event file for each of the 32 fittest, not 100 a generation (and the run's)."""
    rows = logs.read_generations(tracked[0], columns=list(tracking.COLUMNS)).to_dict("records")
    board = tmp_path / "tensorboard"
    tensorboard = tracking._TensorBoard(board, 0)
    expected = set()
    for generation in range(2):
        population = [{**rows[i % len(rows)], "generation": generation, "born_generation": generation,
                       "chromosome_id": f"{generation:04x}{i:08x}", "fitness": float(i * 37 % 100)}
                      for i in range(100)]  # i * 37 % 100: the fitnesses 0-99, shuffled
        tensorboard.write(generation, population, None)
        expected |= {r["chromosome_id"] for r in population if r["fitness"] >= 100 - tracking.SESSIONS}
    tensorboard.close(True)
    assert len(list(board.rglob("events.*"))) == 1 + 2 * tracking.SESSIONS
    assert sorted(p.name for p in (board / "chromosomes").iterdir()) == sorted(expected)
    fittest = board / "chromosomes" / f"{1:04x}{27:08x}"  # 27 * 37 % 100 = 99
    assert _scalars(fittest, "chromosome/fitness") == [(1, 99.0)]
    acc = EventAccumulator(str(fittest))
    acc.Reload()
    assert "_hparams_/session_start_info" in acc.summary_metadata


@pytest.mark.slow
def test_mlflow_run_has_the_config_and_each_generation_once(tracked):
    run_dir, client, run_id = tracked
    df = logs.read_generations(run_dir)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert client.get_experiment(run.info.experiment_id).name == "tiny"
    assert run.data.params["evolve.population"] == "3" and run.data.params["tracking.mlflow"] == "True"
    assert [a.path for a in client.list_artifacts(run_id)] == ["config.yaml"]
    history = client.get_metric_history(run_id, "best_fitness")
    assert sorted(m.step for m in history) == [0, 1, 2]  # generation 1, sent before the driver died, is not doubled
    by_step = {m.step: m.value for m in history}
    assert [by_step[g] for g in range(3)] == pytest.approx(list(df.groupby("generation").fitness.max()))
    assert sorted(m.step for m in client.get_metric_history(run_id, "mean_fitness")) == [0, 1, 2]


@pytest.mark.slow
def test_a_damaged_generation_trained_again_replaces_its_points(tracked, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(tracked[0], run_dir)
    before = _scalars(rundir.tensorboard_dir(run_dir), "generation/best_fitness")
    rundir.generation_dir(run_dir, 1).rename(tmp_path / "aside")  # as --resume sets a damaged generation aside
    cfg = dataclasses.replace(_config(3), tracking=config.TrackingConfig())
    loop.evolve(cfg, "run", run_dir, data.load(cfg.data, cfg.seed).array, load_state(run_dir), redo=(1,))
    after = _scalars(rundir.tensorboard_dir(run_dir), "generation/best_fitness")
    assert [s for s, _ in after] == [0, 1, 2]  # generations 1 and 2 written again, each once
    assert [v for _, v in after] == pytest.approx([v for _, v in before])  # trained again on the CPU: the same


def test_tracking_config_errors_and_older_configs():
    with pytest.raises(errors.ConfigError, match="tracking.mlflow_experiment: 'x' is set, but tracking.mlflow is false"):
        tiny_config(tracking={"mlflow_experiment": "x"})
    with pytest.raises(errors.ConfigError, match=r"tracking.tensorbord: unknown key \(did you mean tracking.tensorboard"):
        tiny_config(tracking={"tensorbord": False})
    with pytest.raises(errors.ConfigError, match="tracking.mlflow: input should be a valid boolean"):
        tiny_config(tracking={"mlflow": "sometimes"})
    saved = config.to_dict(tiny_config())
    del saved["tracking"]  # a run from before tracking: resumes as it ran, without trackers
    older = config.loads_saved(json.dumps(saved), "config.yaml")
    assert older.tracking == config.TrackingConfig(tensorboard=False, mlflow=False)
    assert resume.experiment_differences(older, tiny_config()) == []  # --resume may turn them on


@pytest.mark.slow
def test_mlflow_asked_for_but_not_installed_is_one_line_before_anything(tmp_path):
    code = ("import sys; sys.modules['mlflow'] = None; from neuroevo.cli import main; "
            f"sys.exit(main(['run', '--set', 'tracking.mlflow=true', '--set', 'out_dir={tmp_path}/runs']))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip() == ("neuroevo: error: tracking.mlflow: true needs mlflow, which is not installed; "
                                "pip install 'neuroevo[mlflow]', or set tracking.mlflow: false")
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_tensorboard_loads_without_torch(tmp_path):
    """The driver writes TensorBoard files without importing torch, though tensorboardX would."""
    code = ("import sys; from neuroevo.store import tracking; tb = tracking._tensorboardx(); "
            f"w = tb.SummaryWriter({str(tmp_path)!r}); w.add_scalar('a', 1.0, 0); w.close(); "
            "assert 'torch' not in sys.modules, 'torch was imported'; "
            "import importlib.util; assert importlib.util.find_spec('torch'), 'torch left unimportable'")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
