"""`neuroevo ls`: one line per run of a folder, with the status a user would see (running only while a driver holds the
run), generations done of total, best fitness; on real runs, one stopped by Ctrl-C after its first generation, one of
the layout before schema 4 resumed to its end, and one held by a driver. Also: older runs' layout works with resume,
query, best and sample."""

import json
import shutil
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import yaml

from neuroevo.store import logs, rundir, state
from tests.conftest import neuroevo, old_layout, tiny_dict

# every test here runs the CLI as a subprocess
pytestmark = pytest.mark.slow

GENERATIONS = 3


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """runs/stopped (Ctrl-C after generation 0), runs/old (its copy in the older layout, resumed to the end),
    runs/empty (a folder that no run got to write in)."""
    d = tmp_path_factory.mktemp("ls")
    cfg = tiny_dict(evolve={"population": 2, "generations": GENERATIONS, "elite_fraction": 0.5},
                    data={"subset": 512}, train={"steps_per_epoch": None})  # about a second a generation
    (d / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    runs = d / "runs"
    stopped = runs / "stopped"
    proc = subprocess.Popen([sys.executable, "-m", "neuroevo", "run", "tiny.yaml", "--set", "out_dir=runs",
                             "--set", "run_id=stopped", "--quiet"], cwd=d, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not state.completed(stopped):  # generation 0 in
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, proc.stderr.read()
    shutil.copytree(stopped, runs / "old")
    old_layout(runs / "old")
    p = neuroevo("run", "--resume", runs / "old", "--quiet", cwd=d)
    assert p.returncode == 0, p.stderr
    (runs / "empty").mkdir()
    return runs


def _ls(*args):
    p = neuroevo("ls", *args, "--format", "json")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    return {r["run_id"]: r for r in json.loads(p.stdout)}


def test_ls_tells_finished_interrupted_and_empty_runs(out):
    (out / "old" / rundir.HOLDER).write_text('{"pid": 99999999, "host": "gone", "started": "then"}')  # left by a kill
    runs = _ls(out)
    assert list(runs) == ["empty", "old", "stopped"]
    stopped, old = runs["stopped"], runs["old"]
    assert stopped["status"] == "interrupted" and stopped["total"] == GENERATIONS
    assert stopped["done"] == state.completed(out / "stopped") and 1 <= stopped["done"] < GENERATIONS
    assert old["status"] == "finished" and (old["done"], old["total"]) == (GENERATIONS, GENERATIONS)
    history = logs.read_generations(out / "old")
    assert old["best_fitness"] == history[history.status == "ok"].fitness.max()
    assert old["best_fid"] is None and old["space"] == "seed-v1" and old["started"].startswith("20")
    assert runs["empty"]["status"] == "empty" and runs["empty"]["done"] is None
    table = neuroevo("ls", out).stdout.splitlines()
    assert table[0].split() == ["run_id", "status", "generations", "best_fitness", "best_fid", "started", "space",
                                "flops", "compute"]
    assert table[2].split()[:3] == ["old", "finished", f"{GENERATIONS}/{GENERATIONS}"]
    assert neuroevo("ls", out, "--format", "csv").stdout.splitlines()[0].startswith("run_id,status,done,total,")
    assert list(_ls(out / "old")) == ["old"]  # a run directory itself


def test_ls_says_running_only_while_a_driver_holds_the_run(out, tmp_path):
    held = tmp_path / "runs" / "held"
    shutil.copytree(out / "stopped", held)
    with rundir.claim(held, new=False):
        assert _ls(held.parent)["held"]["status"] == "running"
        assert rundir.claimed(held)  # ls let go of it at once: the driver still has it, and
    assert _ls(held.parent)["held"]["status"] == "interrupted"
    with rundir.claim(held, new=False):  # nothing ls did keeps another driver out
        pass


def test_ls_of_a_folder_that_is_not_there_says_so_in_one_line(tmp_path):
    for bad, why in ((tmp_path / "nope", "no such directory"), (tmp_path / "f", "not a directory")):
        (tmp_path / "f").touch()
        p = neuroevo("ls", bad)
        assert p.returncode == 2 and p.stdout == ""
        assert p.stderr == f"neuroevo: error: {bad}: {why} (expected a folder of run directories, e.g. runs)\n"


def test_a_run_of_the_older_layout_resumes_queries_and_samples_in_it(out, tmp_path):
    old = out / "old"
    assert sorted(p.parent.name for p in old.glob("generations/*/part-0.parquet")) == \
        [f"generation={g:04d}" for g in range(GENERATIONS)]
    versions = [pq.read_table(rundir.generation_file(old, g)).column("schema_version")[0].as_py()
                for g in range(GENERATIONS)]
    done = state.completed(out / "stopped")
    assert versions == [3] * done + [logs.SCHEMA_VERSION] * (GENERATIONS - done)
    p = neuroevo("query", old, "--where", "generation >= 1", "--columns", "generation", "--format", "json")
    assert p.returncode == 0 and [r["generation"] for r in json.loads(p.stdout)] == [1, 1, 2, 2]
    assert neuroevo("run", "--resume", old).stdout.strip().endswith("generations are already logged")
    assert "best chromosome" in neuroevo("best", old).stdout
    p = neuroevo("sample", old, "--n", "4", "--out", tmp_path / "grid.png")
    assert p.returncode == 0 and (tmp_path / "grid.png").is_file(), p.stderr
