"""--resume checks what it finds: each damaged generation is set aside and trained again, an inconsistent
state.json is repaired from the logs or refused in one line; the resumed run equals the uninterrupted one."""

import json
import shutil

import pyarrow.parquet as pq
import pytest
import yaml

from neuroevo.store import logs, rundir
from tests.conftest import neuroevo, tiny_dict

# every test here runs the CLI as a subprocess
pytestmark = pytest.mark.slow

N, GENERATIONS = 4, 3
EXTRA = "part-0 (1).parquet"  # what a file manager's copy is called
COLUMNS = ["generation", "chromosome_id", "d_loss", "g_loss", "fitness"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("checks")
    (d / "tiny.yaml").write_text(yaml.safe_dump(tiny_dict(evolve={"population": N, "generations": GENERATIONS})))
    p = neuroevo("run", "tiny.yaml", "--set", "out_dir=runs", "--set", "run_id=base", "--quiet", cwd=d)
    assert p.returncode == 0, p.stderr
    return d / "runs" / "base"


def _rows(run_dir):
    return logs.read_generations(run_dir).sort_values(COLUMNS[:2]).reset_index(drop=True)[COLUMNS]


def _copy(base, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(base, run_dir)
    return run_dir


def _state(run_dir, change):
    doc = json.loads(rundir.state_file(run_dir).read_text())
    change(doc)
    rundir.state_file(run_dir).write_text(json.dumps(doc))


def _drop_fitness(run_dir):
    path = rundir.generation_file(run_dir, 2)
    pq.write_table(pq.read_table(path).drop(["fitness"]), path)


DAMAGE = {
    "extra file": (lambda r: shutil.copy(rundir.generation_file(r, 1), rundir.generation_dir(r, 1) / EXTRA),
                   "generations/0001 holds part-0 (1).parquet besides part-0.parquet; generation 1 will be trained again",
                   ["0001"]),
    "another generation's file": (lambda r: shutil.copy(rundir.generation_file(r, 2), rundir.generation_file(r, 1)),
                                  "0001/part-0.parquet holds rows of generation ['2']; generation 1 will be trained again",
                                  ["0001"]),
    "no fitness column": (_drop_fitness, f"has no column fitness (schema_version {logs.SCHEMA_VERSION}); generation 2 "
                                         "will be trained again", ["0002"]),
    "generation folder deleted": (lambda r: shutil.rmtree(rundir.generation_dir(r, 1)),
                                  "0001/part-0.parquet is missing; generation 1 will be trained again", []),
    "best deleted": (lambda r: shutil.rmtree(rundir.best_dir(r, 1)),
                     "best/generation=0001/weights.pt is missing; generation 1 will be trained again", []),
    "completed too large": (lambda r: _state(r, lambda d: d.update(completed=9)),
                            "completed is 9, but its populations allow 0-3; counted again from the logged generations",
                            ["state.json"]),
    "completed negative": (lambda r: _state(r, lambda d: d.update(completed=-1)),
                           "completed is -1, but its populations allow 0-3; counted again from the logged",
                           ["state.json"]),
    "population entry removed": (lambda r: _state(r, lambda d: d["population"].pop()),
                                 "generation 3's population has 3 members, expected 4; rebuilt from", ["state.json"]),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_damage_is_set_aside_and_the_run_resumes_exactly(base, tmp_path, case):
    damage, message, discarded = DAMAGE[case]
    run_dir = _copy(base, tmp_path)
    damage(run_dir)
    p = neuroevo("run", "--resume", run_dir, "--quiet")
    assert p.returncode == 0, p.stderr
    ours = [line for line in p.stderr.splitlines() if line.startswith("resume: ")]
    assert any(message in line for line in ours), p.stderr
    assert "Traceback" not in p.stderr
    rows = _rows(run_dir)
    assert rows.groupby("generation").size().tolist() == [N] * GENERATIONS
    assert not rows.duplicated(["generation", "chromosome_id"]).any()
    assert rows.equals(_rows(base))
    assert len(rundir.best_generations(run_dir)) == GENERATIONS
    aside = sorted(p.name for p in rundir.discarded_dir(run_dir).glob("*"))
    assert [name.rsplit("-", 2)[0] for name in aside] == discarded
    again = neuroevo("run", "--resume", run_dir)  # repaired for good: nothing more to say or train
    assert again.returncode == 0 and "already logged" in again.stdout and "resume:" not in again.stderr


def _tree(run_dir):
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


@pytest.mark.parametrize("damage, message", [
    (lambda r: (_state(r, lambda d: d["population"].pop()), rundir.generation_file(r, 2).unlink()),
     "state.json: generation 3's population has 3 members, expected 4, and {run}/generations/0002/"
     "part-0.parquet cannot rebuild it"),
    (lambda r: rundir.state_file(r).write_text('{"completed": 3, "generations": [{"popul'),
     "state.json: unreadable (JSONDecodeError"),
], ids=["population without the log before it", "truncated"])
def test_a_state_the_logs_cannot_repair_is_refused(base, tmp_path, damage, message):
    run_dir = _copy(base, tmp_path)
    damage(run_dir)
    before = _tree(run_dir)
    p = neuroevo("run", "--resume", run_dir)
    assert p.returncode == 2
    assert p.stderr.startswith("neuroevo: error: ") and message.format(run=run_dir) in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert _tree(run_dir) == before


@pytest.mark.parametrize("damage", ["config.yaml deleted", "state.json repaired"])
def test_a_resume_of_a_run_another_driver_holds_is_refused_before_it_writes(base, tmp_path, damage):
    """Both damages are repaired by a resume that gets the lock (config.yaml restored from the logs' copy,
    state.json rewritten): with the lock held elsewhere, the second resume changes nothing."""
    run_dir = _copy(base, tmp_path)
    if damage == "config.yaml deleted":
        rundir.config_file(run_dir).unlink()
    else:
        _state(run_dir, lambda d: d.update(completed=-1))
    with rundir.claim(run_dir, new=False):  # a live driver, as far as a second one can tell
        before = _tree(run_dir)
        p = neuroevo("run", "--resume", run_dir, "--set", f"evolve.generations={GENERATIONS + 1}")
        assert _tree(run_dir) == before
    assert p.returncode == 2
    assert "another neuroevo driver is training this run" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    resumed = neuroevo("run", "--resume", run_dir, "--set", f"evolve.generations={GENERATIONS + 1}", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
