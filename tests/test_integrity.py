"""A run's integrity: every logged generation fingerprinted in state.json, verified by `neuroevo check` and by
--resume (a changed file set aside and trained again); and a population of one, the baseline, trained for real."""

import json
import shutil

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from neuroevo import config
from neuroevo.evolve import population
from neuroevo.evolve.population import Evaluated
from neuroevo.store import fingerprints, logs, rundir, state
from tests.conftest import neuroevo, tiny_config, tiny_dict

N, GENERATIONS = 4, 3
COLUMNS = ["generation", "chromosome_id", "chromosome", "is_elite", "task_seed", "d_loss", "g_loss", "fitness"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("integrity")
    (d / "tiny.yaml").write_text(yaml.safe_dump(tiny_dict(evolve={"population": N, "generations": GENERATIONS})))
    p = neuroevo("run", "tiny.yaml", "--set", "out_dir=runs", "--set", "run_id=base", "--quiet", cwd=d)
    assert p.returncode == 0, p.stderr
    return d / "runs" / "base"


def _copy(base, tmp_path):
    return shutil.copytree(base, tmp_path / "run")


def _rows(run_dir):
    return logs.read_generations(run_dir).sort_values(COLUMNS[:2]).reset_index(drop=True)[COLUMNS]


def _tree(run_dir):
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def _double_d_loss(run_dir, generation):
    """A value edited and the file rewritten with pyarrow, its schema and metadata (the config's copy) kept: whole
    and readable, so only its fingerprint tells."""
    path = rundir.generation_file(run_dir, generation)
    table = pq.read_table(path)
    i = table.schema.get_field_index("d_loss")
    table = table.set_column(i, table.schema.field(i), pc.multiply(table.column("d_loss"), 2.0))
    pq.write_table(table, path)
    assert pq.read_schema(path).metadata == pq.read_schema(rundir.generation_file(run_dir, 0)).metadata
    assert logs.check_generation(run_dir, generation) is None


@pytest.mark.slow
def test_every_logged_generation_is_fingerprinted(base):
    completed, recorded = state.fingerprints(base)
    assert completed == GENERATIONS and sorted(recorded) == list(range(GENERATIONS))
    for g in range(GENERATIONS):
        assert recorded[g] == fingerprints.of(rundir.generation_file(base, g))


@pytest.mark.slow
def test_check_of_an_untouched_run(base):
    before = _tree(base)
    p = neuroevo("check", base)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [f"generation {g}" for g in range(GENERATIONS)]
    assert all(": ok (sha256 " in line for line in lines[:-1])
    assert lines[-1] == f"{base}: {GENERATIONS} of {GENERATIONS} logged generations match their fingerprints"
    assert _tree(base) == before  # read-only


@pytest.mark.slow
def test_a_changed_generation_is_named_by_check_and_trained_again_by_resume(base, tmp_path):
    run_dir = _copy(base, tmp_path)
    _double_d_loss(run_dir, 1)
    path = rundir.generation_file(run_dir, 1)

    p = neuroevo("check", run_dir)
    assert p.returncode == 1, p.stderr
    changed = [line for line in p.stdout.splitlines() if "changed" in line and line.startswith("generation")]
    assert changed == [f"generation 1: {path} has changed since it was logged (sha256 "
                       f"{fingerprints.of(path)[:12]}..., state.json recorded {state.fingerprints(base)[1][1][:12]}...)"]
    assert p.stdout.splitlines()[-1] == f"{run_dir}: 2 of 3 logged generations match their fingerprints, 1 changed or missing"

    p = neuroevo("run", "--resume", run_dir, "--quiet")
    assert p.returncode == 0, p.stderr
    ours = [line for line in p.stderr.splitlines() if line.startswith("resume: ")]
    assert ours == [f"resume: {path} has changed since it was logged (sha256 {changed[0].split('sha256 ')[1]}; "
                    f"generation 1 will be trained again"]
    assert "Traceback" not in p.stderr
    assert _rows(run_dir).equals(_rows(base))
    assert [a.name.rsplit("-", 2)[0] for a in rundir.discarded_dir(run_dir).iterdir()] == ["0001"]
    assert neuroevo("check", run_dir).returncode == 0  # fingerprinted anew
    again = neuroevo("run", "--resume", run_dir)
    assert again.returncode == 0 and "already logged" in again.stdout and "resume:" not in again.stderr


@pytest.mark.slow
def test_a_resume_of_an_untouched_run_is_unchanged(base, tmp_path):
    run_dir = _copy(base, tmp_path)
    before = _tree(run_dir)
    p = neuroevo("run", "--resume", run_dir)
    assert p.returncode == 0 and "already logged" in p.stdout and "resume:" not in p.stderr, p.stderr
    assert _tree(run_dir) == before


@pytest.mark.slow
def test_a_missing_generation_file_fails_check(base, tmp_path):
    run_dir = _copy(base, tmp_path)
    rundir.generation_file(run_dir, 2).unlink()
    p = neuroevo("check", run_dir)
    assert p.returncode == 1, p.stderr
    assert f"generation 2: {rundir.generation_file(run_dir, 2)} is missing" in p.stdout.splitlines()


@pytest.mark.slow
def test_a_state_without_fingerprints_loads_and_says_so_once(base, tmp_path):
    """A run logged before fingerprints were kept: nothing to verify, said once; resume goes on and fingerprints
    what it logs from then on."""
    run_dir = _copy(base, tmp_path)
    doc = json.loads(rundir.state_file(run_dir).read_text())
    del doc["sha256"]
    rundir.state_file(run_dir).write_text(json.dumps(doc))
    assert state.load(run_dir).sha256 == {}
    note = "generations 0-2 of 3 logged have no fingerprint in state.json (logged by a neuroevo that kept none), " \
           "so they cannot be verified"

    p = neuroevo("check", run_dir)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [note, f"{run_dir}: 0 of 3 logged generations match their fingerprints"]

    p = neuroevo("run", "--resume", run_dir, "--quiet", "--set", "evolve.generations=4")
    assert p.returncode == 0, p.stderr
    assert [line for line in p.stderr.splitlines() if line.startswith("resume: ")] == [f"resume: {note}"]
    assert sorted(state.fingerprints(run_dir)[1]) == [3]


@pytest.mark.slow
@pytest.mark.parametrize("damage, message", [
    (lambda r: rundir.state_file(r).unlink(), "{run}/state.json: not found; is {run} a neuroevo run directory?"),
    (lambda r: rundir.state_file(r).write_text('{"format": 2, "completed": 3, "population": [], "sha256": {"0": 1}}'),
     "{run}/state.json: unreadable (ValueError: sha256 of generation '0' is not a generation's sha256)"),
], ids=["no state.json", "a fingerprint that is none"])
def test_check_of_no_run_is_bad_input(base, tmp_path, damage, message):
    run_dir = _copy(base, tmp_path)
    damage(run_dir)
    p = neuroevo("check", run_dir)
    assert p.returncode == 2 and p.stdout == "", p.stderr
    assert p.stderr.strip() == f"neuroevo: error: {message.format(run=run_dir)}"


# ---------------------------------------------------------------------------------------------------------
# a population of one: the baseline


@pytest.mark.parametrize("strategy", ["random", "mutation", "crossover", "tournament"])
def test_a_population_of_one_keeps_its_one_chromosome(strategy):
    cfg = tiny_config(evolve={"population": 1, "strategy": strategy, "elite_fraction": 0.2})
    assert config.elite_count(cfg.evolve) == 1
    first = population.initial_population(cfg)
    after = population.next_population(cfg, 1, [Evaluated(first[0], 0.3)])
    assert [(m.chromosome, m.operator, m.parents) for m in after] == [(first[0].chromosome, "elite",
                                                                       (first[0].chromosome.id,))]


@pytest.mark.slow
def test_a_population_of_one_trains_its_chromosome_on(tmp_path):
    """With keep_weights the baseline's one chromosome goes on from its own weights, generation after generation."""
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_dict(evolve={"population": 1, "generations": 3,
                                                                         "keep_weights": True})))
    p = neuroevo("run", "tiny.yaml", "--set", "out_dir=runs", "--set", "run_id=one", "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    run_dir = tmp_path / "runs" / "one"
    rows = logs.read_generations(run_dir).sort_values("generation")
    assert rows["generation"].tolist() == [0, 1, 2]
    assert rows["chromosome_id"].nunique() == 1 and rows["status"].tolist() == ["ok"] * 3
    assert rows["is_elite"].tolist() == [False, True, True] and rows["operator"].tolist() == ["random", "elite", "elite"]
    assert rows["task_seed"].nunique() == 3  # each generation trains with its own seed
    one = rows["chromosome_id"].iloc[0]
    assert [rundir.weights_file(run_dir, g, one).is_file() for g in (1, 2)] == [True, True]
    assert neuroevo("check", run_dir).returncode == 0
