"""Nothing a user has run is lost: bad input, crashed chromosomes, killed workers, a killed driver."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from neuroevo.evolve import population
from neuroevo.execution import loop
from neuroevo.store import logs, rundir
from neuroevo.store.state import load as load_state
from neuroevo.train import data
from tests.conftest import neuroevo, tiny_config, tiny_dict

# every test here starts a local Ray or runs the CLI as a subprocess
pytestmark = pytest.mark.slow

# ---------------------------------------------------------------------------------------------------------
# bad input: one line on stderr, exit code 2, no traceback, nothing written


BAD_CONFIGS = [
    (["--set", "evolve.populaton=3"], "evolve.populaton: unknown key (did you mean evolve.population?)"),
    (["--set", "evolve.population=0"], "evolve.population: input should be greater than or equal to 1 (got 0)"),
    (["--set", "evolve.population=abc"], "evolve.population: input should be a valid integer"),
    (["--set", "evolve.elite_fraction=0"], "evolve.elite_fraction: input should be greater than 0"),
    (["--set", "evolve.elite_fraction=1"], "evolve.elite_fraction: input should be less than 1"),
    (["--set", "evolve.elite_fraction=0.05"], "evolve.elite_fraction: 0.05 of a population of 8 keeps no elite"),
    (["--set", "evolve.generations=0"], "evolve.generations: input should be greater than or equal to 1"),
    (["--set", "fitness.lam=0.5"], "fitness.lam + fitness.gamma: must equal 1 (got 0.5 + 0.25)"),
    (["--set", "fitness.scale=-1"], "fitness.scale: input should be greater than 0"),
    (["--set", "space.channels=[9, 5]"], "space.channels: min 9 is greater than max 5"),
    (["--set", "space.kernel=[1, 3]"], "space.kernel: kernels must be at least 2"),
    (["--set", "space.noise_side=[0.25, 1.5]"], "space.noise_side.1: input should be less than 1"),
    (["--set", "space.noise_side=[0.01, 0.02]"], "space.noise_side: [0.01, 0.02] of a 16px image leaves no noise side"),
    (["--set", "space.lr=[0, 0.001]"], "space.lr.0: input should be greater than 0"),
    (["--set", "space.momentum=[0.5, 1.0]"], "space.momentum.1: input should be less than 1"),
    (["--set", "space.g_blocks=[3, 5]"], "space.g_blocks: [3, 5] blocks cannot grow a 9px noise to 16px"),
    (["--set", "space.d_blocks=[1, 9]"], "space.d_blocks: 9 blocks of kernel 5 shrink a 16px image to nothing"),
    (["--set", "space.max_params=10"], "space.max_params: 10000 samples in a row had more than 10 parameters"),
    (["--set", "data.source=mnist"], "data.source: expected 'demo', 'cifar10', 'cifar100', 'imagenet' or 'folder', got 'mnist'"),
    (["--set", "data.source=folder", "--set", "data.root=/no/such/dir"], "data.root: /no/such/dir is not a directory"),
    (["cifar10", "--set", "data.root=/no/such/dir"], "data.root: no cifar10 at /no/such/dir/cifar-10-batches-py"),
    (["--set", "data.image_size=2"], "data.image_size: input should be greater than or equal to 4"),
    (["--set", "data.channels=2"], "data.channels: expected 1 or 3, got 2"),
    (["--set", "data.subset=10"], "data.subset: 10 images is fewer than one batch (space.batch_size=64)"),
    (["--set", "train.epochs=0"], "train.epochs: input should be greater than or equal to 1"),
    (["--set", "train.timeout_s=0"], "train.timeout_s: input should be greater than 0"),
    (["--set", "resources.num_gpus=-1"], "resources.num_gpus: expected a number >= 0, 'auto' or 'memory' (got -1)"),
    (["--set", "resources.max_retries=-1"], "resources.max_retries: input should be greater than or equal to 0"),
    (["--set", "foo.bar=1"], "foo: unknown key"),
    (["--set", "evolve"], "--set evolve: expected key=value"),
    (["nope.yaml"], "nope.yaml: no such config file or preset"),
    (["--resume", "no-such-run"], "--resume: no-such-run/config.yaml not found"),
]


@pytest.mark.parametrize("args, message", BAD_CONFIGS, ids=[" ".join(a) for a, _ in BAD_CONFIGS])
def test_bad_config_is_one_line_exit_2(tmp_path, args, message):
    p = neuroevo("run", *args, "--set", f"out_dir={tmp_path}/runs", cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("neuroevo: error: ") and message in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_bad_yaml_files(tmp_path):
    (tmp_path / "broken.yaml").write_text("evolve: [unclosed\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    for name, message in (("broken.yaml", "not valid YAML"), ("list.yaml", "expected a mapping of config keys")):
        p = neuroevo("run", name, cwd=tmp_path)
        assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------------------
# chromosomes that fail, diverge or run too long; workers that die


def _kill_when_running(task_name: str, timeout: float = 120.0) -> int:
    """SIGKILL the Ray worker process titled ray::<task_name> as soon as it appears; its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if title.strip() == f"ray::{task_name}":
                os.kill(int(pid), signal.SIGKILL)
                return int(pid)
        time.sleep(0.02)
    raise TimeoutError(f"no worker ran {task_name}")


def _generation_with_a_killed_worker(ray, tmp_path, max_retries):
    # enough steps that the victim is still training when it is found
    cfg = tiny_config(data={"subset": 1024}, train={"epochs": 3, "steps_per_epoch": None},
                      resources={"max_retries": max_retries}, evolve={"population": 3, "generations": 1})
    members = population.fresh_members(cfg, 0, 3)
    images = ray.put(data.load(cfg.data, cfg.seed).array)
    victim = members[0].chromosome.id
    out = {}
    driver = threading.Thread(target=lambda: out.update(
        df=pd.DataFrame(t.row for t in loop.run_generation(cfg, "r", tmp_path, 0, members, images))))
    driver.start()
    _kill_when_running(f"train-g0-{victim}")
    driver.join(timeout=300)
    df = out["df"]
    assert len(df) == 3 and len(logs.read_generations(tmp_path)) == 3
    return df.set_index("chromosome_id"), victim


def test_a_killed_worker_is_retried(ray_local, tmp_path):
    df, victim = _generation_with_a_killed_worker(ray_local, tmp_path, max_retries=3)
    assert (df.status == "ok").all(), df.error.tolist()


def test_a_worker_killed_past_max_retries_is_lost(ray_local, tmp_path):
    df, victim = _generation_with_a_killed_worker(ray_local, tmp_path, max_retries=0)
    assert df.loc[victim, "status"] == "lost" and df.loc[victim, "fitness"] == 0.0
    assert "Worker" in df.loc[victim, "error"] or "died" in df.loc[victim, "error"]
    assert (df.drop(index=victim).status == "ok").all()


def test_divergence_and_timeout_are_logged_and_the_run_goes_on(ray_local, tmp_path):
    images = data.load(tiny_config().data, 0).array
    wild = tiny_config(space={"lr": [1e30, 1e31], "momentum": [0.9, 0.9]}, train={"epochs": 2, "steps_per_epoch": 4},
                       fitness={"failed": -1.0})
    (tmp_path / "wild").mkdir()
    state = loop.evolve(wild, "wild", tmp_path / "wild", images)
    df = logs.read_generations(tmp_path / "wild")
    assert state.completed == 2 and len(df) == 8
    assert (df.status == "diverged").all() and (df.fitness == -1.0).all()
    assert df.error.str.contains("non-finite loss").all()

    slow = tiny_config(train={"timeout_s": 1e-6})
    (tmp_path / "slow").mkdir()
    loop.evolve(slow, "slow", tmp_path / "slow", images)
    df = logs.read_generations(tmp_path / "slow")
    assert len(df) == 8 and (df.status == "timeout").all() and (df.fitness == 0.0).all()
    assert df.error.str.contains("train.timeout_s").all()


# ---------------------------------------------------------------------------------------------------------
# a killed driver, Ctrl-C, damaged files: --resume finishes the same run


GENERATIONS = 4


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    (d / "tiny.yaml").write_text(yaml.safe_dump(tiny_dict(evolve={"generations": GENERATIONS})))
    return d


@pytest.fixture(scope="module")
def uninterrupted(workdir):
    p = neuroevo("run", "tiny.yaml", "--set", "out_dir=runs", "--set", "run_id=whole", cwd=workdir)
    assert p.returncode == 0, p.stderr
    return _history(workdir / "runs" / "whole")


def _history(run_dir: Path) -> pd.DataFrame:
    df = logs.read_generations(run_dir)
    return df.sort_values(["generation", "chromosome_id"]).reset_index(drop=True)


def _assert_same_run(resumed: pd.DataFrame, whole: pd.DataFrame) -> None:
    assert len(resumed) == 4 * GENERATIONS
    assert not resumed.duplicated(["generation", "chromosome_id"]).any()
    for col in ("generation", "chromosome_id", "chromosome", "is_elite", "born_generation", "task_seed", "fitness"):
        assert resumed[col].tolist() == whole[col].tolist(), col


def _start(workdir: Path, run_id: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "neuroevo", "run", "tiny.yaml", "--set", "out_dir=runs",
                             "--set", f"run_id={run_id}"], cwd=workdir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for_generations(run_dir: Path, n: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads((run_dir / "state.json").read_text())["completed"] >= n:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)


@pytest.mark.parametrize("after", [0, 1, 2, 3])
def test_sigkill_of_the_driver_then_resume(workdir, uninterrupted, after):
    """Kill -9 once `after` generations are logged, plus a random moment; --resume gives the same run."""
    run_id = f"killed-{after}"
    run_dir = workdir / "runs" / run_id
    proc = _start(workdir, run_id)
    _wait_for_generations(run_dir, after, proc)
    time.sleep(random.Random(after).uniform(0, 0.5))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    try:  # the driver's local Ray processes share its process group: end them as a dead host would
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p = neuroevo("run", "--resume", f"runs/{run_id}", cwd=workdir)
    assert p.returncode == 0, p.stderr
    _assert_same_run(_history(run_dir), uninterrupted)


def test_ctrl_c_keeps_finished_generations_and_says_how_to_resume(workdir, uninterrupted):
    run_dir = workdir / "runs" / "interrupted"
    proc = _start(workdir, "interrupted")
    _wait_for_generations(run_dir, 1, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived")
    assert proc.returncode == 130, stderr
    assert f"neuroevo run --resume {Path('runs') / 'interrupted'}" in stderr
    completed = load_state(run_dir).completed
    assert completed >= 1 and len(logs.read_generations(run_dir)) == 4 * completed
    p = neuroevo("run", "--resume", "runs/interrupted", cwd=workdir)
    assert p.returncode == 0, p.stderr
    _assert_same_run(_history(run_dir), uninterrupted)


def test_a_damaged_generation_file_is_detected_and_redone(workdir, uninterrupted):
    p = neuroevo("run", "tiny.yaml", "--set", "out_dir=runs", "--set", "run_id=damaged", cwd=workdir)
    assert p.returncode == 0
    run_dir = workdir / "runs" / "damaged"
    part = rundir.generation_dir(run_dir, 1) / "part-0.parquet"
    part.write_bytes(part.read_bytes()[:100])  # a truncated file, as a crash mid-copy leaves it
    (rundir.generation_dir(run_dir, 2) / ".part-0.parquet.tmp").write_bytes(b"half a file")  # ignored by readers
    p = neuroevo("run", "--resume", "runs/damaged", cwd=workdir)
    assert p.returncode == 0, p.stderr
    assert "generation 1 will be trained again" in p.stderr
    _assert_same_run(_history(run_dir), uninterrupted)
    assert len(list((run_dir / "discarded").iterdir())) == 1  # the damaged file is kept aside, not deleted


def test_a_finished_run_resumes_to_nothing_and_can_be_extended(workdir, uninterrupted):
    p = neuroevo("run", "tiny.yaml", "--set", "out_dir=runs", "--set", "run_id=extend", cwd=workdir)
    assert p.returncode == 0
    p = neuroevo("run", "--resume", "runs/extend", cwd=workdir)
    assert p.returncode == 0 and "already logged" in p.stdout
    p = neuroevo("run", "--resume", "runs/extend", "--set", f"evolve.generations={GENERATIONS + 1}", cwd=workdir)
    assert p.returncode == 0, p.stderr
    df = _history(workdir / "runs" / "extend")
    assert len(df) == 4 * (GENERATIONS + 1)
    _assert_same_run(df[df.generation < GENERATIONS].reset_index(drop=True), uninterrupted)


def test_a_resume_that_would_change_the_experiment_is_refused(workdir, uninterrupted):
    p = neuroevo("run", "--resume", "runs/whole", "--set", "evolve.population=5", "--set", "seed=1", cwd=workdir)
    assert p.returncode == 2
    assert "--resume: the config would change the experiment: evolve.population (4 -> 5); seed (0 -> 1)" in p.stderr
    assert len(logs.read_generations(workdir / "runs" / "whole")) == 4 * GENERATIONS
